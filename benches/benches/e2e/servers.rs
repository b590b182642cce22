//! The servers in the table: one entry per server, each an echo in its crate's best documented
//! shape. A server runs in a child process of the harness (see `process.rs`): either this
//! executable as `serve NAME` (the functions of this module), or another executable
//! ([`Launch::Command`]: `sonar serve`, the command users run first).
//!
//! Each sonar row is also compared with the raw-TCP echo on its own runtime ([`ServerKind::ceiling`]):
//! `raw-tcp` (tokio), `raw-tcp-smol` and `raw-tcp-async-std`, all three one-threaded in the same
//! shape as the sonar server on that runtime.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use futures_channel::oneshot;
use futures_util::future::select;
use futures_util::{FutureExt as _, Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One server of the table.
pub struct ServerKind {
    /// The name in the table and on the command line.
    pub name: &'static str,
    /// Whether sonar's rows are compared with it (the best peer of a round is the reference).
    pub peer: bool,
    /// False for the raw-TCP echo (no handshake).
    pub websocket: bool,
    /// Negotiates permessage-deflate when offered.
    pub deflate: bool,
    /// The raw-TCP echo on the same runtime: the ceiling this row is compared with in the
    /// `vs raw TCP, same runtime` column (when that server is in the run).
    pub ceiling: Option<&'static str>,
    /// How the child process is started.
    pub launch: Launch,
}

/// How a server's child process is started.
pub enum Launch {
    /// This executable as `serve NAME`: the function runs the server on the calling thread,
    /// sends its address and returns when `stop` fires.
    InProcess(fn(mpsc::Sender<SocketAddr>, oneshot::Receiver<()>)),
    /// Another executable of this workspace, found next to this one in the target directory
    /// (`target/PROFILE/`, or the path in the environment variable `env` if set), run with
    /// `args` on the CPUs `cpus` (a taskset list) when pinning. It prints a stdout line
    /// containing `listening on ADDR`, and stops on SIGTERM.
    Command {
        program: &'static str,
        env: &'static str,
        args: &'static [&'static str],
        cpus: &'static str,
    },
}

/// Every server, in interleaving order.
pub const SERVERS: &[ServerKind] = &[
    ServerKind {
        name: "sonar-tokio",
        peer: false,
        websocket: true,
        deflate: true,
        ceiling: Some("raw-tcp"),
        launch: Launch::InProcess(serve_sonar_tokio),
    },
    // The `sonar` command with its defaults (tokio's multi-threaded runtime, which has one
    // worker when the process is pinned to one CPU), as a user runs it first.
    ServerKind {
        name: "sonar-serve",
        peer: false,
        websocket: true,
        deflate: true,
        ceiling: Some("raw-tcp"),
        launch: Launch::Command {
            program: "sonar",
            env: "SONAR_BIN",
            args: &["serve", "--addr", "127.0.0.1:0"],
            cpus: crate::process::SERVER_CPU,
        },
    },
    // `sonar serve --threads 2` on both CPUs (its second thread shares CPU 1 with the load
    // generator: on a 2-CPU machine this row shows what a second core can add, and its cost).
    ServerKind {
        name: "sonar-serve-2-threads",
        peer: false,
        websocket: true,
        deflate: true,
        ceiling: Some("raw-tcp"),
        launch: Launch::Command {
            program: "sonar",
            env: "SONAR_BIN",
            args: &["serve", "--addr", "127.0.0.1:0", "--threads", "2"],
            cpus: "0,1",
        },
    },
    // Two accept loops on one port (`SO_REUSEPORT`), each a single-threaded runtime, on both
    // CPUs, as nginx and uWebSockets scale.
    ServerKind {
        name: "sonar-serve-reuse-port-2",
        peer: false,
        websocket: true,
        deflate: true,
        ceiling: Some("raw-tcp"),
        launch: Launch::Command {
            program: "sonar",
            env: "SONAR_BIN",
            args: &[
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--reuse-port",
                "--threads",
                "2",
            ],
            cpus: "0,1",
        },
    },
    ServerKind {
        name: "sonar-smol",
        peer: false,
        websocket: true,
        deflate: true,
        ceiling: Some("raw-tcp-smol"),
        launch: Launch::InProcess(serve_sonar_smol),
    },
    ServerKind {
        name: "sonar-async-std",
        peer: false,
        websocket: true,
        deflate: true,
        ceiling: Some("raw-tcp-async-std"),
        launch: Launch::InProcess(serve_sonar_async_std),
    },
    ServerKind {
        name: "sonar-axum",
        peer: false,
        websocket: true,
        deflate: true,
        ceiling: Some("raw-tcp"),
        launch: Launch::InProcess(|ready, stop| serve_axum(sonar_axum_app(), ready, stop)),
    },
    ServerKind {
        name: "tokio-tungstenite",
        peer: true,
        websocket: true,
        deflate: false,
        ceiling: Some("raw-tcp"),
        launch: Launch::InProcess(|ready, stop| serve_tokio(tungstenite_echo, ready, stop)),
    },
    ServerKind {
        name: "fastwebsockets",
        peer: true,
        websocket: true,
        deflate: false,
        ceiling: Some("raw-tcp"),
        launch: Launch::InProcess(|ready, stop| serve_tokio(fastwebsockets_echo, ready, stop)),
    },
    ServerKind {
        name: "tokio-websockets",
        peer: true,
        websocket: true,
        deflate: false,
        ceiling: Some("raw-tcp"),
        launch: Launch::InProcess(|ready, stop| serve_tokio(tokio_websockets_echo, ready, stop)),
    },
    ServerKind {
        name: "sockudo-ws",
        peer: true,
        websocket: true,
        deflate: false,
        ceiling: Some("raw-tcp"),
        launch: Launch::InProcess(|ready, stop| serve_tokio(sockudo_echo, ready, stop)),
    },
    ServerKind {
        name: "axum-ws",
        peer: true,
        websocket: true,
        deflate: false,
        ceiling: Some("raw-tcp"),
        launch: Launch::InProcess(|ready, stop| serve_axum(axum_ws_app(), ready, stop)),
    },
    ServerKind {
        name: "yawc",
        peer: true,
        websocket: true,
        deflate: true,
        ceiling: Some("raw-tcp"),
        launch: Launch::InProcess(|ready, stop| serve_axum(yawc_app(), ready, stop)),
    },
    ServerKind {
        name: "raw-tcp",
        peer: false,
        websocket: false,
        deflate: false,
        ceiling: None,
        launch: Launch::InProcess(|ready, stop| serve_tokio(raw_echo, ready, stop)),
    },
    ServerKind {
        name: "raw-tcp-smol",
        peer: false,
        websocket: false,
        deflate: false,
        ceiling: None,
        launch: Launch::InProcess(serve_raw_smol),
    },
    ServerKind {
        name: "raw-tcp-async-std",
        peer: false,
        websocket: false,
        deflate: false,
        ceiling: None,
        launch: Launch::InProcess(serve_raw_async_std),
    },
];

/// The table entry called `name`.
pub fn kind(name: &str) -> Option<&'static ServerKind> {
    SERVERS.iter().find(|k| k.name == name)
}

/// A server running on its own thread of this process (the child side of `process.rs`).
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    pub fn start(kind: &'static ServerKind) -> Running {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("server-{}", kind.name))
            .spawn(move || match kind.launch {
                Launch::InProcess(serve) => serve(ready_tx, stop_rx),
                Launch::Command { .. } => panic!("{} is not served by this executable", kind.name),
            })
            .expect("spawn server thread");
        let addr = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server did not start");
        Running {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Stops the accept loop and the runtime (connection tasks are dropped with it).
    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---------------------------------------------------------------------------------------------
// sonar
// ---------------------------------------------------------------------------------------------

/// sonar's documented echo: `recv` and `send` (every adapter's `WebSocket` is sonar-async's).
async fn sonar_echo(mut ws: sonar_tokio::WebSocket) {
    while let Some(Ok(message)) = ws.recv().await {
        if ws.send(message).await.is_err() {
            break;
        }
    }
}

fn serve_sonar_tokio(ready: mpsc::Sender<SocketAddr>, stop: oneshot::Receiver<()>) {
    current_thread_runtime().block_on(async move {
        let listener = sonar_tokio::listen(loopback(), sonar_tokio::Config::default())
            .await
            .expect("bind");
        ready.send(listener.local_addr().expect("addr")).unwrap();
        let accept = async {
            loop {
                match listener.accept().await {
                    Ok((incoming, _)) => {
                        tokio::spawn(async move {
                            if let Ok(ws) = incoming.upgrade().await {
                                sonar_echo(ws).await;
                            }
                        });
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
        };
        let _ = select(pin!(accept), stop).await;
    });
}

fn serve_sonar_smol(ready: mpsc::Sender<SocketAddr>, stop: oneshot::Receiver<()>) {
    // One thread, like the current-thread tokio runtimes: connection tasks run on a local
    // executor inside `block_on`, which also drives the reactor.
    let ex = smol::LocalExecutor::new();
    smol::block_on(ex.run(async {
        let listener = sonar_smol::listen(loopback(), sonar_smol::Config::default())
            .await
            .expect("bind");
        ready.send(listener.local_addr().expect("addr")).unwrap();
        let accept = async {
            loop {
                match listener.accept().await {
                    Ok((incoming, _)) => ex
                        .spawn(async move {
                            if let Ok(ws) = incoming.upgrade().await {
                                sonar_echo(ws).await;
                            }
                        })
                        .detach(),
                    Err(_) => {
                        smol::Timer::after(Duration::from_millis(1)).await;
                    }
                }
            }
        };
        let _ = select(pin!(accept), stop).await;
    }));
}

fn serve_sonar_async_std(ready: mpsc::Sender<SocketAddr>, stop: oneshot::Receiver<()>) {
    async_std::task::block_on(async move {
        let listener = sonar_async_std::listen(loopback(), sonar_async_std::Config::default())
            .await
            .expect("bind");
        ready.send(listener.local_addr().expect("addr")).unwrap();
        let accept = async {
            loop {
                match listener.accept().await {
                    Ok((incoming, _)) => {
                        async_std::task::spawn(async move {
                            if let Ok(ws) = incoming.upgrade().await {
                                sonar_echo(ws).await;
                            }
                        });
                    }
                    Err(_) => async_std::task::sleep(Duration::from_millis(1)).await,
                }
            }
        };
        let _ = select(pin!(accept), stop).await;
    });
}

// ---------------------------------------------------------------------------------------------
// axum: sonar's extractor and axum's own `extract::ws`, both behind `axum::serve` (HTTP/1.1)
// ---------------------------------------------------------------------------------------------

fn sonar_axum_app() -> axum::Router {
    async fn handler(ws: sonar_axum::WebSocketUpgrade) -> axum::response::Response {
        ws.on_upgrade(sonar_echo)
    }
    axum::Router::new().route("/", axum::routing::any(handler))
}

fn axum_ws_app() -> axum::Router {
    use axum::extract::ws::Message;
    async fn handler(ws: axum::extract::ws::WebSocketUpgrade) -> axum::response::Response {
        ws.on_upgrade(|socket| {
            feed_echo(
                socket,
                |m| matches!(m, Message::Text(_) | Message::Binary(_)),
                |m| matches!(m, Message::Close(_)),
            )
        })
    }
    axum::Router::new().route("/", axum::routing::any(handler))
}

/// yawc 0.3 through its axum extractor: low-latency compression (level 1, as sonar's default)
/// and UTF-8 validation on (RFC 6455 requires it; yawc leaves it off by default, sonar always
/// validates), echoing with `feed` and `flush` as for tokio-tungstenite. Its limits are set to
/// sonar's defaults (16 MiB frames, 64 MiB messages): yawc's own default refuses a frame of
/// 1 MiB or more (`payload_len >= max_payload_read`, 1 MiB), which closed every connection of
/// the 1 MiB scenarios.
fn yawc_app() -> axum::Router {
    use yawc::frame::OpCode;
    async fn handler(ws: yawc::IncomingUpgrade) -> axum::response::Response {
        let options = yawc::Options::default()
            .with_low_latency_compression()
            .with_utf8()
            .with_limits(16 << 20, 64 << 20);
        let Ok((response, upgrade)) = ws.upgrade(options) else {
            return axum::http::StatusCode::BAD_REQUEST.into_response();
        };
        tokio::spawn(async move {
            if let Ok(socket) = upgrade.await {
                // yawc's stream yields frames, not results.
                feed_echo(
                    socket.map(Ok::<_, std::convert::Infallible>),
                    |f: &yawc::Frame| matches!(f.opcode(), OpCode::Text | OpCode::Binary),
                    |f: &yawc::Frame| f.opcode() == OpCode::Close,
                )
                .await;
            }
        });
        response.into_response()
    }
    use axum::response::IntoResponse as _;
    axum::Router::new().route("/", axum::routing::any(handler))
}

fn serve_axum(app: axum::Router, ready: mpsc::Sender<SocketAddr>, stop: oneshot::Receiver<()>) {
    use axum::serve::ListenerExt as _;
    current_thread_runtime().block_on(async move {
        let listener = tokio::net::TcpListener::bind(loopback())
            .await
            .expect("bind");
        ready.send(listener.local_addr().expect("addr")).unwrap();
        // axum's documented way to set TCP_NODELAY on accepted connections.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.await;
            })
            .await;
    });
}

// ---------------------------------------------------------------------------------------------
// The other peers, each on a current-thread tokio runtime
// ---------------------------------------------------------------------------------------------

fn serve_tokio<F: Future<Output = ()> + Send + 'static>(
    echo: fn(TcpStream) -> F,
    ready: mpsc::Sender<SocketAddr>,
    stop: oneshot::Receiver<()>,
) {
    current_thread_runtime().block_on(async move {
        let listener = tokio::net::TcpListener::bind(loopback())
            .await
            .expect("bind");
        ready.send(listener.local_addr().expect("addr")).unwrap();
        let accept = async {
            loop {
                match listener.accept().await {
                    Ok((tcp, _)) => {
                        let _ = tcp.set_nodelay(true);
                        tokio::spawn(echo(tcp));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
        };
        let _ = select(pin!(accept), stop).await;
    });
}

/// The echo loop of a `Stream + Sink` WebSocket in its fastest documented shape: `feed` each
/// message and flush only when no further message is ready (what `StreamExt::forward` does).
async fn feed_echo<S, M, E>(mut ws: S, is_data: fn(&M) -> bool, is_close: fn(&M) -> bool)
where
    S: Stream<Item = Result<M, E>> + Sink<M> + Unpin,
{
    while let Some(Ok(first)) = ws.next().await {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            if is_close(&message) {
                return;
            }
            if is_data(&message) && ws.feed(message).await.is_err() {
                return;
            }
            match ws.next().now_or_never() {
                Some(Some(Ok(message))) => next = Some(message),
                Some(_) => return,
                None => {}
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}

async fn tungstenite_echo(tcp: TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    feed_echo(
        ws,
        |m: &tokio_tungstenite::tungstenite::Message| m.is_text() || m.is_binary(),
        tokio_tungstenite::tungstenite::Message::is_close,
    )
    .await;
}

async fn fastwebsockets_echo(tcp: TcpStream) {
    let Ok(tcp) = accept_handshake(tcp).await else {
        return;
    };
    let mut ws = fastwebsockets::WebSocket::after_handshake(tcp, fastwebsockets::Role::Server);
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    let mut ws = fastwebsockets::FragmentCollector::new(ws);
    while let Ok(frame) = ws.read_frame().await {
        let echo = matches!(
            frame.opcode,
            fastwebsockets::OpCode::Text | fastwebsockets::OpCode::Binary
        );
        if frame.opcode == fastwebsockets::OpCode::Close
            || (echo && ws.write_frame(frame).await.is_err())
        {
            break;
        }
    }
}

async fn tokio_websockets_echo(tcp: TcpStream) {
    let Ok((_, mut ws)) = tokio_websockets::ServerBuilder::new().accept(tcp).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        if message.is_text() || message.is_binary() {
            if ws.send(message).await.is_err() {
                break;
            }
        } else if message.is_close() {
            break;
        }
    }
}

async fn raw_echo(mut tcp: TcpStream) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tcp.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// The raw-TCP echo on smol, in the shape of `serve_sonar_smol` (one thread: a local executor
/// inside `block_on`): read 64 KiB, then `write_all`.
fn serve_raw_smol(ready: mpsc::Sender<SocketAddr>, stop: oneshot::Receiver<()>) {
    use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let ex = smol::LocalExecutor::new();
    smol::block_on(ex.run(async {
        let listener = smol::net::TcpListener::bind(loopback())
            .await
            .expect("bind");
        ready.send(listener.local_addr().expect("addr")).unwrap();
        let accept = async {
            loop {
                match listener.accept().await {
                    Ok((mut tcp, _)) => {
                        let _ = tcp.set_nodelay(true);
                        ex.spawn(async move {
                            let mut buf = vec![0u8; 64 << 10];
                            while let Ok(n @ 1..) = tcp.read(&mut buf).await {
                                if tcp.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        })
                        .detach();
                    }
                    Err(_) => {
                        smol::Timer::after(Duration::from_millis(1)).await;
                    }
                }
            }
        };
        let _ = select(pin!(accept), stop).await;
    }));
}

/// The raw-TCP echo on async-std, in the shape of `serve_sonar_async_std` (`block_on` and
/// `task::spawn`): read 64 KiB, then `write_all`.
fn serve_raw_async_std(ready: mpsc::Sender<SocketAddr>, stop: oneshot::Receiver<()>) {
    use async_std::io::{ReadExt as _, WriteExt as _};
    async_std::task::block_on(async move {
        let listener = async_std::net::TcpListener::bind(loopback())
            .await
            .expect("bind");
        ready.send(listener.local_addr().expect("addr")).unwrap();
        let accept = async {
            loop {
                match listener.accept().await {
                    Ok((mut tcp, _)) => {
                        let _ = tcp.set_nodelay(true);
                        async_std::task::spawn(async move {
                            let mut buf = vec![0u8; 64 << 10];
                            while let Ok(n @ 1..) = tcp.read(&mut buf).await {
                                if tcp.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => async_std::task::sleep(Duration::from_millis(1)).await,
                }
            }
        };
        let _ = select(pin!(accept), stop).await;
    });
}

/// sockudo-ws 1.7 in its README's echo (`WebSocketStream`, `next` and `send`), compression
/// off (its default, and the `permessage-deflate` feature is not built). Its upgrade is done
/// with `sonar_handshake`, as for fastwebsockets (sockudo-ws's example does it by hand too).
async fn sockudo_echo(tcp: TcpStream) {
    use sockudo_ws::Message;
    let Ok(tcp) = accept_handshake(tcp).await else {
        return;
    };
    let mut ws = sockudo_ws::WebSocketStream::server(tcp, sockudo_ws::Config::default());
    while let Some(Ok(message)) = ws.next().await {
        if matches!(message, Message::Close(_))
            || (matches!(message, Message::Text(_) | Message::Binary(_))
                && ws.send(message).await.is_err())
        {
            break;
        }
    }
}

/// The server handshake for fastwebsockets, which leaves the HTTP upgrade to its user (hyper,
/// or this): request and answer by `sonar_handshake`.
pub async fn accept_handshake(mut tcp: TcpStream) -> std::io::Result<TcpStream> {
    let head = crate::load::read_head(&mut tcp).await?;
    let handshake = sonar_handshake::ServerHandshake::new();
    let Ok(Some((request, _))) = handshake.decode_request(&head) else {
        return Err(std::io::Error::other("bad upgrade request"));
    };
    let mut response = Vec::new();
    handshake.encode_accept(&request, None, &mut response);
    tcp.write_all(&response).await?;
    Ok(tcp)
}
