//! A server that routes, authenticates and picks a subprotocol before it accepts: only
//! `GET /chat` with `Authorization: Bearer <token>` is upgraded, with the `chat.v2`
//! subprotocol if the client offers it. Everything else gets an HTTP error instead of the
//! `101`: 404 for another path, 401 (with `WWW-Authenticate`) without the token.
//!
//! ```text
//! cargo run -p sonar-tokio --example auth_server             # listens on 127.0.0.1:9004
//! sonar client ws://127.0.0.1:9004/chat -H 'Authorization: Bearer secret' --protocol chat.v2
//! ```

use sonar_tokio::{Config, Error, Incoming, Rejection, UpgradeRequest};

/// The token this example accepts.
pub const TOKEN: &str = "secret";
/// The subprotocol this server speaks.
pub const SUBPROTOCOL: &str = "chat.v2";

/// The request policy: route, authenticate, choose the subprotocol (or answer with an error).
pub fn policy(req: &UpgradeRequest) -> Result<Option<String>, Rejection> {
    if req.path() != "/chat" {
        return Err(Rejection::not_found());
    }
    let expected = format!("Bearer {TOKEN}");
    if req.header("authorization") != Some(expected.as_bytes()) {
        return Err(Rejection::unauthorized().with_header("WWW-Authenticate", "Bearer"));
    }
    Ok(req
        .subprotocols()
        .iter()
        .find(|p| p.as_str() == SUBPROTOCOL)
        .cloned())
}

async fn session(incoming: Incoming) -> Result<(), Error> {
    let (mut ws, request) = incoming.upgrade_with(policy).await?;
    ws.send(format!("welcome to {}", request.path())).await?;
    while let Some(message) = ws.recv().await {
        ws.send(message?).await?;
    }
    Ok(())
}

/// Accepts connections until accepting fails.
pub async fn serve(listener: sonar_tokio::Listener) -> std::io::Result<()> {
    loop {
        let (incoming, peer) = listener.accept().await?;
        tokio::spawn(async move {
            match session(incoming).await {
                Ok(()) => {}
                // A refused request was answered with its status; nothing more to do.
                Err(Error::Rejected(rejection)) => {
                    eprintln!("{peer}: refused {}", rejection.status)
                }
                Err(e) if e.is_disconnect() => {}
                Err(e) => eprintln!("{peer}: {e}"),
            }
        });
    }
}

#[allow(dead_code)] // The test includes this file and runs `serve` itself.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = sonar_tokio::listen("127.0.0.1:9004".parse()?, Config::default()).await?;
    println!("listening on ws://{}/chat", listener.local_addr()?);
    serve(listener).await?;
    Ok(())
}
