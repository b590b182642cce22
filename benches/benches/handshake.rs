//! Handshake benchmarks: server request decode + 101 encode, client request encode + response decode.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sonar_handshake::{ClientHandshake, ClientRequest, ServerHandshake};

/// A browser-like upgrade request (Chromium sends about this many headers).
const REQUEST: &[u8] = b"GET /chat?room=1 HTTP/1.1\r\n\
Host: server.example.com:9001\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://server.example.com:9001\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

fn server(c: &mut Criterion) {
    let hs = ServerHandshake::new().with_subprotocols(["chat"]);
    let mut g = c.benchmark_group("handshake_server");
    g.throughput(Throughput::Bytes(REQUEST.len() as u64));
    g.bench_function("decode_request", |b| {
        b.iter(|| hs.decode_request(black_box(REQUEST)))
    });
    let (req, _) = hs.decode_request(REQUEST).unwrap().unwrap();
    let mut out = Vec::with_capacity(256);
    g.bench_function("encode_accept", |b| {
        b.iter(|| {
            out.clear();
            hs.encode_accept(black_box(&req), Some("chat"), &mut out);
            out.len()
        })
    });
    g.bench_function("decode_request+encode_accept", |b| {
        b.iter(|| {
            let (req, used) = hs.decode_request(black_box(REQUEST)).unwrap().unwrap();
            out.clear();
            hs.encode_accept(&req, hs.select_subprotocol(&req), &mut out);
            (used, out.len())
        })
    });
    g.finish();
}

fn client(c: &mut Criterion) {
    let request = ClientRequest::new("server.example.com", "/chat?room=1")
        .with_port(9001)
        .with_subprotocol("chat")
        .with_header("Origin", "http://server.example.com:9001");
    let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n\x89\x02hi";
    let mut g = c.benchmark_group("handshake_client");
    let mut out = Vec::with_capacity(512);
    g.bench_function("encode_request+decode_response", |b| {
        b.iter(|| {
            let mut hs = ClientHandshake::new(request.clone(), *b"the sample nonce");
            out.clear();
            hs.encode_request(&mut out);
            let (_, used) = hs.decode_response(black_box(response)).unwrap().unwrap();
            (used, out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, server, client);
criterion_main!(benches);
