//! A server publishing ticks to every subscriber, on tokio: each tick is framed (and, with
//! compression, compressed) once and queued to every connection subscribed to the path's
//! topic, through [`Topics`](sonar_tokio::Topics).
//!
//! A client subscribes by its URL path: `ws://HOST:PORT/ticks` gets the ticks, any other path
//! a topic of that name (nothing is published there). A client more than
//! [`MAX_BACKPRESSURE`] bytes behind is skipped for the ticks it cannot take, and catches up
//! with the latest ones once it reads again (market-data style: stale ticks are not worth
//! queueing).
//!
//! ```text
//! cargo run -p sonar-tokio --example broadcast -- --addr 127.0.0.1:9003 --interval-ms 100
//! sonar client ws://127.0.0.1:9003/ticks                   # in one or more shells
//! ```

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sonar_tokio::{
    Config, DeflateConfig, Error, OnBackpressure, PreparedMessage, Topics, WsWriter,
};

/// How far behind (bytes queued and not yet written) a subscriber may fall before ticks skip it.
pub const MAX_BACKPRESSURE: usize = 256 * 1024;

/// The topic the ticker publishes to.
pub const TICKS: &str = "ticks";

/// The configuration of every connection. The compressor resets after every message, so a
/// tick is compressed once for every subscriber with the same compression parameters, and an
/// idle connection holds no compressor.
pub fn config() -> Config {
    let mut deflate = DeflateConfig::default();
    deflate.no_context_takeover = true;
    Config::default()
        .with_deflate(deflate)
        .with_write_buffer(MAX_BACKPRESSURE)
        .with_write_queue(usize::MAX)
}

/// Tick `seq` as JSON text.
pub fn tick(seq: u64) -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!(
        "{{\"seq\":{seq},\"unix_ms\":{millis},\"price\":{}.{:02}}}",
        100 + seq % 7,
        seq % 100
    )
}

/// Publishes a tick to [`TICKS`] every `interval`, forever.
pub async fn ticker(topics: Topics, interval: Duration) {
    let mut clock = tokio::time::interval(interval);
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    for seq in 1.. {
        clock.tick().await;
        topics.publish(TICKS, &PreparedMessage::new(tick(seq)));
    }
}

/// One subscriber: subscribed to the topic of its path until its connection ends. Messages
/// it sends are read and dropped (reading also answers its pings and its Close).
async fn subscriber(incoming: sonar_tokio::Incoming, topics: Topics) -> Result<(), Error> {
    let (ws, request) = incoming.upgrade_with(|_| Ok(None)).await?;
    let topic = request.path().trim_start_matches('/').to_owned();
    let (mut reader, writer): (_, WsWriter) = ws.into_split();
    topics.subscribe(&topic, &writer);
    let mut result = Ok(());
    while let Some(message) = reader.recv().await {
        if let Err(e) = message {
            result = Err(e);
        }
    }
    topics.unsubscribe_all(&writer);
    result
}

/// Accepts subscribers on `listener` until accepting fails.
pub async fn serve(listener: sonar_tokio::Listener, topics: Topics) -> std::io::Result<()> {
    loop {
        let (incoming, peer) = listener.accept().await?;
        let topics = topics.clone();
        tokio::spawn(async move {
            if let Err(e) = subscriber(incoming, topics).await
                && !e.is_disconnect()
            {
                eprintln!("{peer}: {e}");
            }
        });
    }
}

fn flag(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

#[allow(dead_code)] // The examples test includes this file and runs `serve` itself.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = flag("--addr")
        .unwrap_or_else(|| "127.0.0.1:9003".to_owned())
        .parse()?;
    let interval = Duration::from_millis(match flag("--interval-ms") {
        Some(ms) => ms.parse()?,
        None => 100,
    });
    let listener = sonar_tokio::listen(addr, config()).await?;
    println!(
        "broadcast: listening on {} (subscribe at ws://{0}/{TICKS})",
        listener.local_addr()?
    );
    let topics = Topics::new(MAX_BACKPRESSURE, OnBackpressure::Skip);
    tokio::spawn(ticker(topics.clone(), interval));
    serve(listener, topics).await?;
    Ok(())
}
