//! An echo client on async-std: sends two messages, prints the replies, closes.
//!
//! ```text
//! cargo run -p sonar-cli -- serve --runtime async-std
//! cargo run -p sonar-async-std --example async_std_echo_client [ws://127.0.0.1:9001]
//! ```

use sonar_async_std::{CloseCode, Message};

fn main() -> Result<(), sonar_async_std::Error> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    async_std::task::block_on(async {
        let mut ws = sonar_async_std::connect(&url).await?;
        ws.send(Message::text("hello")).await?;
        ws.send(Message::text("from async-std")).await?;
        for _ in 0..2 {
            match ws.recv().await {
                Some(Ok(Message::Text(text))) => println!("text: {text}"),
                Some(Ok(Message::Binary(bytes))) => println!("binary: {} bytes", bytes.len()),
                Some(Err(e)) => return Err(e),
                None => break,
            }
        }
        ws.close(CloseCode::NORMAL, "bye").await
    })
}
