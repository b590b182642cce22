//! Idle memory per connection: each server in a child process, VmRSS above its empty baseline.

use std::time::Duration;

use crate::load::{self, Compression};
use crate::process::ServerProcess;
use crate::servers::{ServerKind, current_thread_runtime};

/// Prints one Markdown row per server: `conns` idle connections (after the handshake, or after
/// one echoed message each with `after_one_message`), the server's resident memory before and
/// after, and the difference per connection.
pub fn run_memory(
    servers: &[&'static ServerKind],
    conns: usize,
    compression: Compression,
    after_one_message: bool,
    pin: bool,
) {
    let rt = current_thread_runtime();
    for kind in servers {
        let mut server = ServerProcess::start(kind, pin);
        std::thread::sleep(Duration::from_millis(300));
        let base = server.rss();
        let mut open = rt.block_on(load::open_many(
            server.addr,
            kind.websocket,
            compression,
            conns,
        ));
        if after_one_message {
            let frame = load::masked_frame(1024, compression);
            let echoed = rt.block_on(load::echo_once(&mut open, &frame));
            if echoed != open.len() {
                eprintln!(
                    "  {}: {echoed} of {} connections echoed",
                    kind.name,
                    open.len()
                );
            }
        }
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(1000)).await });
        let loaded = server.rss();
        let per = loaded.saturating_sub(base) as f64 / open.len().max(1) as f64;
        println!(
            "| {} | {} | {:.1} MiB | {:.1} MiB | {:.1} KB |",
            kind.name,
            open.len(),
            base as f64 / (1 << 20) as f64,
            loaded as f64 / (1 << 20) as f64,
            per / 1000.0
        );
        drop(open);
        server.stop();
    }
}
