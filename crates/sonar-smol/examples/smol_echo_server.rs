//! An echo server on smol: every text and binary message is sent back unchanged.
//!
//! ```text
//! cargo run -p sonar-smol --example smol_echo_server             # listens on 127.0.0.1:9001
//! cargo run -p sonar-smol --example smol_echo_client             # in another shell
//! ```

use sonar_smol::{Config, Error};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned())
        .parse()?;
    smol::block_on(async {
        let listener = sonar_smol::listen(addr, Config::default()).await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (incoming, peer) = listener.accept().await?;
            // The handshake runs in the connection's own task.
            smol::spawn(async move {
                if let Err(e) = echo(incoming).await {
                    eprintln!("{peer}: {e}");
                }
            })
            .detach();
        }
    })
}

async fn echo(incoming: sonar_smol::Incoming) -> Result<(), Error> {
    let mut ws = incoming.upgrade().await?;
    while let Some(message) = ws.recv().await {
        ws.send(message?).await?;
    }
    Ok(())
}
