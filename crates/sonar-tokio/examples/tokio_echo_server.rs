//! An echo server on tokio: every text and binary message is sent back unchanged.
//!
//! ```text
//! cargo run -p sonar-tokio --example tokio_echo_server            # listens on 127.0.0.1:9001
//! cargo run -p sonar-tokio --example tokio_echo_client            # in another shell
//! ```
//!
//! Each connection runs in a task of its own, handshake included, so one slow client never
//! holds up `accept`.

use sonar_tokio::{Config, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned())
        .parse()?;
    let listener = sonar_tokio::listen(addr, Config::default()).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (incoming, peer) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(e) = echo(incoming).await {
                eprintln!("{peer}: {e}");
            }
        });
    }
}

async fn echo(incoming: sonar_tokio::Incoming) -> Result<(), Error> {
    let mut ws = incoming.upgrade().await?;
    while let Some(message) = ws.recv().await {
        ws.send(message?).await?;
    }
    if let Some(status) = ws.close_status() {
        println!("closed: {} {}", status.code, status.reason);
    }
    Ok(())
}
