//! An echo client on tokio: sends three messages, prints the replies, closes.
//!
//! ```text
//! cargo run -p sonar-cli -- serve                            # or: --example tokio_echo_server
//! cargo run -p sonar-tokio --example tokio_echo_client [ws://127.0.0.1:9001]
//! ```

use sonar_tokio::{CloseCode, Message};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), sonar_tokio::Error> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let mut ws = sonar_tokio::connect(&url).await?;
    ws.send(Message::text("hello")).await?;
    ws.send(Message::text("from tokio")).await?;
    ws.send(Message::binary(vec![1u8, 2, 3])).await?;
    for _ in 0..3 {
        match ws.recv().await {
            Some(Ok(Message::Text(text))) => println!("text: {text}"),
            Some(Ok(Message::Binary(bytes))) => println!("binary: {bytes:?}"),
            Some(Err(e)) => return Err(e),
            None => break,
        }
    }
    println!("rtt: {:?}", ws.ping().await?);
    ws.close(CloseCode::NORMAL, "bye").await
}
