//! `wss://` with the real binary: a self-signed certificate made at test time (rcgen), a
//! sonar echo server behind rustls on a thread, and `sonar client` / `sonar ping` with and
//! without `--insecure`. Loopback only; every wait bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use sonar_async::tls::TlsAcceptor;
use sonar_async::tls::rustls::ServerConfig;
use sonar_async::tls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sonar_async::{Config, Listener};
use sonar_tokio::Tokio;

const SONAR: &str = env!("CARGO_BIN_EXE_sonar");
const LIMIT: Duration = Duration::from_secs(20);

fn acceptor() -> TlsAcceptor {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let key = PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der());
    let provider = Arc::new(sonar_async::tls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], PrivateKeyDer::Pkcs8(key))
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

/// A wss:// echo server on its own thread, serving `connections` connections.
fn tls_echo_server(connections: usize) -> SocketAddr {
    let (addr_tx, addr_rx) = mpsc::channel();
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let acceptor = acceptor();
            let addr = "127.0.0.1:0".parse().unwrap();
            let listener = Listener::bind(Tokio, addr, Config::default())
                .await
                .unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            for _ in 0..connections {
                let (incoming, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok((mut ws, _)) = incoming.upgrade_tls(&acceptor, |_| Ok(None)).await
                    else {
                        return;
                    };
                    while let Some(Ok(m)) = ws.recv().await {
                        if ws.send(m).await.is_err() {
                            break;
                        }
                    }
                });
            }
            // Let the last connections finish.
            tokio::time::sleep(LIMIT).await;
        });
    });
    addr_rx.recv_timeout(LIMIT).unwrap()
}

fn run(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(SONAR)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            panic!("sonar {args:?} did not exit within {LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    Output {
        status,
        stdout: out.into_bytes(),
        stderr: err.into_bytes(),
    }
}

#[test]
fn wss_client_and_ping_with_insecure_and_a_refusal_without() {
    let addr = tls_echo_server(3);
    let url = format!("wss://{addr}/");

    // Without --insecure the self-signed certificate is refused: one line, exit 1.
    let out = run(&["client", &url], "");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("sonar: "), "{err}");
    assert!(err.contains("certificate") || err.contains("tls"), "{err}");

    let out = run(&["client", &url, "--insecure"], "secret\nlines\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "secret\nlines\n");

    let out = run(&["ping", &url, "--insecure", "-c", "2", "-i", "0.05"], "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("2 pings sent, 2 pongs received, 0% loss"),
        "{stdout}"
    );
}
