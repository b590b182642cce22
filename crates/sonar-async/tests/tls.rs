//! `wss://` on every runtime: a self-signed certificate made at test time (rcgen), a
//! sonar server behind `Incoming::upgrade_tls`, a sonar client trusting exactly that
//! certificate, echo over loopback TLS.
#![cfg(feature = "rustls")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use bytes::Bytes;
use sonar_async::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sonar_async::tls::rustls::{RootCertStore, ServerConfig};
use sonar_async::tls::{TlsAcceptor, client_config_with_roots};
use sonar_async::{ClientRequest, CloseCode, Config, Listener, Message, Runtime};
use sonar_async_std::AsyncStd;
use sonar_smol::Smol;
use sonar_tokio::Tokio;

struct Cert {
    der: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

fn self_signed() -> Cert {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    Cert {
        der: ck.cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()),
    }
}

fn acceptor(cert: &Cert) -> TlsAcceptor {
    let provider = Arc::new(sonar_async::tls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der.clone()],
            PrivateKeyDer::Pkcs8(cert.key.clone_key()),
        )
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

fn client_config(cert: &Cert) -> Config {
    let mut roots = RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    Config::default().with_tls(Arc::new(client_config_with_roots(roots)))
}

async fn server<R: Runtime>(rt: R, acceptor: TlsAcceptor, addr_tx: mpsc::Sender<SocketAddr>) {
    let listener = Listener::bind(rt, "127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap();
    addr_tx.send(listener.local_addr().unwrap()).unwrap();
    // First connection: a plain ws:// client must fail the TLS handshake, not hang.
    let (incoming, _) = listener.accept().await.unwrap();
    assert!(incoming.upgrade_tls(&acceptor, |_| Ok(None)).await.is_err());
    let (incoming, _) = listener.accept().await.unwrap();
    let (mut ws, req) = incoming.upgrade_tls(&acceptor, |_| Ok(None)).await.unwrap();
    assert_eq!(req.path(), "/secure");
    while let Some(m) = ws.recv().await {
        ws.send(m.unwrap()).await.unwrap();
    }
}

async fn client<R: Runtime>(rt: R, addr: SocketAddr, config: Config) {
    // Plain ws:// against the TLS server: the handshake fails with an error.
    let plain = ClientRequest::from_url(&format!("ws://{addr}/")).unwrap();
    let quick = config
        .clone()
        .with_handshake_timeout(Duration::from_secs(5));
    assert!(sonar_async::connect(&rt, plain, quick).await.is_err());

    let request = ClientRequest::from_url(&format!("wss://{addr}/secure")).unwrap();
    assert!(request.is_secure());
    let (mut ws, _) = sonar_async::connect(&rt, request, config).await.unwrap();
    for n in [0usize, 5, 70_000, 1 << 20] {
        let msg = Message::binary(Bytes::from(vec![0x5a; n]));
        ws.send(msg.clone()).await.unwrap();
        assert_eq!(ws.recv().await.unwrap().unwrap(), msg);
    }
    ws.send(Message::text("über TLS")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap().unwrap(), Message::text("über TLS"));
    ws.close(CloseCode::NORMAL, "").await.unwrap();
    assert!(ws.recv().await.is_none());
}

fn run(kind: &'static str) {
    let cert = self_signed();
    let acceptor = acceptor(&cert);
    let config = client_config(&cert);
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (addr_tx, addr_rx) = mpsc::channel();
        let block =
            move |f: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>| match kind {
                "tokio" => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(f),
                "smol" => smol::block_on(f),
                _ => async_std::task::block_on(f),
            };
        let server_fut: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = match kind
        {
            "tokio" => Box::pin(server(Tokio, acceptor, addr_tx)),
            "smol" => Box::pin(server(Smol, acceptor, addr_tx)),
            _ => Box::pin(server(AsyncStd, acceptor, addr_tx)),
        };
        let server_thread = std::thread::spawn(move || block(server_fut));
        let addr = addr_rx.recv().unwrap();
        let client_fut: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = match kind
        {
            "tokio" => Box::pin(client(Tokio, addr, config)),
            "smol" => Box::pin(client(Smol, addr, config)),
            _ => Box::pin(client(AsyncStd, addr, config)),
        };
        block(client_fut);
        server_thread.join().unwrap();
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("wss echo finished");
}

#[test]
fn wss_on_tokio() {
    run("tokio");
}

#[test]
fn wss_on_smol() {
    run("smol");
}

#[test]
fn wss_on_async_std() {
    run("async-std");
}
