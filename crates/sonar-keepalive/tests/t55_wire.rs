//! T55: keepalive through the sonar-core codec, on the wire.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use bytes::Bytes;
use sonar_core::Event;
use sonar_core::testing::Endpoint;
use sonar_keepalive::{
    Input, KeepAlive, KeepaliveConfig, Output, Payload, RttSample, ping_channel,
};

const T0: Duration = Duration::from_secs(500);

fn at(ms: u64) -> Duration {
    T0 + Duration::from_millis(ms)
}

/// Moves codec events into keepalive, as the connection task does (C-27).
fn feed_events(server: &mut Endpoint, ka: &mut KeepAlive, now: Duration) -> Vec<Event> {
    let events = server.take_events();
    for e in &events {
        match e {
            Event::Pong(p) => ka.handle(now, Input::PongReceived(p)),
            Event::PingSent(p) => ka.handle(now, Input::PingWrittenPayload(p)),
            Event::Ping(_) => ka.handle(now, Input::PingReceived),
            _ => {}
        }
    }
    events
}

#[test]
fn t55_keepalive_ping_on_the_wire_and_rtt() {
    // T55: server role. Salt 43 makes the first generated payload 1 ^ 43 = 42 = "0000002a".
    assert_eq!(Payload::generated(42, 0).as_bytes(), b"0000002a");
    let mut server = Endpoint::server();
    let mut ka = KeepAlive::new(KeepaliveConfig::default(), 43);
    ka.handle(at(0), Input::Opened);
    assert_eq!(ka.poll(at(19_999)), None);

    let Some(Output::SendPing { payload, .. }) = ka.poll(at(20_000)) else {
        panic!("no keepalive ping at t0+20 s");
    };
    assert_eq!(payload.as_bytes(), b"0000002a");
    server
        .conn
        .ping(Bytes::copy_from_slice(payload.as_bytes()))
        .unwrap();
    assert_eq!(
        server.take_output(),
        [0x89, 0x08, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x32, 0x61]
    );
    let events = feed_events(&mut server, &mut ka, at(20_000));
    assert_eq!(
        events,
        vec![Event::PingSent(Bytes::from_static(b"0000002a"))]
    );
    // The pong timer now runs from the write.
    assert_eq!(ka.next_deadline(), Some(at(40_000)));

    // The peer (a client, RFC key 37 fa 21 3d) answers with the masked pong.
    let pong = [
        0x8a, 0x88, 0x37, 0xfa, 0x21, 0x3d, 0x07, 0xca, 0x11, 0x0d, 0x07, 0xca, 0x13, 0x5c,
    ];
    server.feed(&pong).unwrap();
    ka.handle(at(20_040), Input::BytesReceived);
    let events = feed_events(&mut server, &mut ka, at(20_040));
    assert_eq!(events, vec![Event::Pong(Bytes::from_static(b"0000002a"))]);
    let d = Duration::from_millis(40);
    assert_eq!(
        ka.poll(at(20_040)),
        Some(Output::Rtt(RttSample {
            rtt: d,
            smoothed: d,
            min: d
        }))
    );
    assert_eq!(ka.poll(at(20_040)), None);
    assert_eq!(ka.next_deadline(), Some(at(40_040)));
    // Nothing else was written: a pong is never answered.
    assert!(server.take_output().is_empty());
}

#[test]
fn user_ping_through_registry_codec_and_keepalive() {
    // A user `ping()` end to end: registry -> keepalive -> codec -> wire -> pong -> RTT.
    let mut cx = Context::from_waker(Waker::noop());
    let mut server = Endpoint::server();
    let mut ka = KeepAlive::new(KeepaliveConfig::default(), 0);
    let (mut registry, pinger) = ping_channel(4);
    ka.handle(at(0), Input::Opened);

    let mut rtt = pin!(pinger.ping(Some(b"hi".to_vec())));
    assert!(rtt.as_mut().poll(&mut cx).is_pending());
    let Poll::Ready(Some(request)) = registry.poll_request(&mut cx) else {
        panic!("no request");
    };
    let (id, payload) = ka.user_ping(at(1_000), request.payload()).unwrap();
    server
        .conn
        .ping(Bytes::copy_from_slice(payload.as_bytes()))
        .unwrap();
    registry.bind(request, Ok(id));
    assert_eq!(server.take_output(), [0x89, 0x02, b'h', b'i']);
    feed_events(&mut server, &mut ka, at(1_000));

    // Masked pong "hi" with key 00 00 00 00, 7 ms later.
    server.feed(&[0x8a, 0x82, 0, 0, 0, 0, b'h', b'i']).unwrap();
    feed_events(&mut server, &mut ka, at(1_007));
    while let Some(out) = ka.poll(at(1_007)) {
        if let Output::PingAcked { id, latency } = out {
            registry.complete(id, latency);
        }
    }
    assert_eq!(
        rtt.as_mut().poll(&mut cx),
        Poll::Ready(Ok(Duration::from_millis(7)))
    );
}
