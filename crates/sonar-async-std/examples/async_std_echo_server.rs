//! An echo server on async-std: every text and binary message is sent back unchanged.
//!
//! async-std is discontinued upstream; prefer `sonar-smol` or `sonar-tokio` for new code.
//!
//! ```text
//! cargo run -p sonar-async-std --example async_std_echo_server        # listens on 127.0.0.1:9001
//! cargo run -p sonar-async-std --example async_std_echo_client        # in another shell
//! ```

use sonar_async_std::{Config, Error};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned())
        .parse()?;
    async_std::task::block_on(async {
        let listener = sonar_async_std::listen(addr, Config::default()).await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (incoming, peer) = listener.accept().await?;
            // The handshake runs in the connection's own task.
            async_std::task::spawn(async move {
                if let Err(e) = echo(incoming).await {
                    eprintln!("{peer}: {e}");
                }
            });
        }
    })
}

async fn echo(incoming: sonar_async_std::Incoming) -> Result<(), Error> {
    let mut ws = incoming.upgrade().await?;
    while let Some(message) = ws.recv().await {
        ws.send(message?).await?;
    }
    Ok(())
}
