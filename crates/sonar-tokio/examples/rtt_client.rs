//! A client that measures round-trip times: user pings, and the keepalive's own statistics.
//!
//! ```text
//! cargo run --release -p sonar-cli -- serve                  # in one shell
//! cargo run -p sonar-tokio --example rtt_client -- ws://127.0.0.1:9001/ 10
//! ```

use std::time::Duration;

use sonar_tokio::{CloseCode, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:9001/".to_owned());
    let count: u32 = args.next().and_then(|n| n.parse().ok()).unwrap_or(5);
    let mut ws = sonar_tokio::connect(&url).await?;
    for seq in 1..=count {
        // Resolves when the matching pong arrives: the time between the ping leaving and the
        // pong arriving, each read when it happened.
        let rtt = ws.ping().await?;
        println!("pong seq={seq} rtt={rtt:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let Some(stats) = ws.rtt() {
        println!(
            "{} samples: min {:?}, smoothed {:?}, last {:?}",
            stats.samples, stats.min, stats.smoothed, stats.last
        );
    }
    ws.close(CloseCode::NORMAL, "done").await
}
