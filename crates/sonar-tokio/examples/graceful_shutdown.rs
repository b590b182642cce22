//! Graceful shutdown: on Ctrl-C the server stops accepting, sends every client Close 1001
//! (going away), and waits for the closing handshakes (each bounded by the close timeout)
//! before it exits, so no client sees a reset.
//!
//! ```text
//! cargo run -p sonar-tokio --example graceful_shutdown       # listens on 127.0.0.1:9005
//! sonar client ws://127.0.0.1:9005/                          # then Ctrl-C the server
//! ```

use std::future::Future;

use sonar_tokio::{CloseCode, Config, Error, WebSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Resolves once shutdown has begun.
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn echo(mut ws: WebSocket, mut shutdown: watch::Receiver<bool>) -> Result<(), Error> {
    loop {
        tokio::select! {
            message = ws.recv() => match message {
                Some(message) => ws.send(message?).await?,
                None => return Ok(()),
            },
            () = stopping(&mut shutdown) => {
                // Waits for the client's Close (or the close timeout).
                return ws.close(CloseCode::GOING_AWAY, "server shutting down").await;
            }
        }
    }
}

/// Serves until `stop` resolves, then closes every connection and waits for them.
pub async fn serve(listener: sonar_tokio::Listener, stop: impl Future<Output = ()>) {
    let (shutdown_tx, shutdown) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((incoming, _peer)) = accepted else { continue };
                let shutdown = shutdown.clone();
                connections.spawn(async move { echo(incoming.upgrade().await?, shutdown).await });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut stop => break,
        }
    }
    drop(listener);
    let _ = shutdown_tx.send(true);
    while let Some(result) = connections.join_next().await {
        if let Ok(Err(e)) = result
            && !e.is_disconnect()
        {
            eprintln!("connection ended with {e}");
        }
    }
}

#[allow(dead_code)] // The test includes this file and runs `serve` itself.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = sonar_tokio::listen("127.0.0.1:9005".parse()?, Config::default()).await?;
    println!("listening on ws://{}/", listener.local_addr()?);
    serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    println!("every connection closed; bye");
    Ok(())
}
