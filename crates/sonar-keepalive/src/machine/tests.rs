//! Spec §7.3 (T38..T54) on a virtual clock, plus property tests.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use alloc::vec::Vec;
use core::time::Duration;

use proptest::prelude::*;

use crate::{
    DeadReason, Heartbeat, Input, KeepAlive, KeepaliveConfig, MIN_RTT, Output, Payload, PingError,
    PingFloodGuard, PingId, PingStrategy, PongMatch, RttSample, RttStats,
};

/// An arbitrary origin: nothing depends on `t0 == 0`.
const T0: Duration = Duration::from_secs(1_000);

fn at(ms: u64) -> Duration {
    T0 + Duration::from_millis(ms)
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn open_with(config: KeepaliveConfig) -> KeepAlive {
    let mut ka = KeepAlive::new(config, 0);
    ka.handle(at(0), Input::Opened);
    ka
}

fn open() -> KeepAlive {
    open_with(KeepaliveConfig::default())
}

fn drain(ka: &mut KeepAlive, now: Duration) -> Vec<Output> {
    let mut out = Vec::new();
    for _ in 0..1_000 {
        match ka.poll(now) {
            Some(o) => out.push(o),
            None => return out,
        }
    }
    panic!("poll never returned None");
}

fn expect_ping(ka: &mut KeepAlive, now: Duration) -> (PingId, Payload) {
    match ka.poll(now) {
        Some(Output::SendPing { id, payload }) => (id, payload),
        other => panic!("expected SendPing at {now:?}, got {other:?}"),
    }
}

fn rtt(rtt: Duration, smoothed: Duration, min: Duration) -> Output {
    Output::Rtt(RttSample { rtt, smoothed, min })
}

fn same_rtt(d: Duration) -> Output {
    rtt(d, d, d)
}

/// The server's Close frame for a keepalive death: what the driver writes.
fn server_close_frame(reason: DeadReason) -> Vec<u8> {
    let text = reason.close_reason().as_bytes();
    let mut f = vec![0x88, 2 + text.len() as u8];
    f.extend_from_slice(&reason.close_code().to_be_bytes());
    f.extend_from_slice(text);
    f
}

#[test]
fn t38_no_ping_before_the_interval() {
    // T38
    let mut ka = open();
    assert_eq!(ka.poll(at(19_999)), None);
    assert_eq!(ka.next_deadline(), Some(at(20_000)));
}

#[test]
fn t39_generated_payload_and_first_rtt() {
    // T39
    let mut ka = open();
    let (id, payload) = expect_ping(&mut ka, at(20_000));
    assert_eq!(payload.len(), 8);
    assert!(payload.iter().all(|b| (0x21..=0x7e).contains(b) && *b != 0));
    assert_eq!(payload.as_bytes(), b"00000001");
    ka.handle(at(20_000), Input::PingWritten(id));
    assert_eq!(ka.poll(at(20_000)), None);
    ka.handle(at(20_050), Input::PongReceived(b"00000001"));
    assert_eq!(drain(&mut ka, at(20_050)), vec![same_rtt(ms(50))]);
    assert_eq!(
        ka.rtt(),
        Some(RttStats {
            last: ms(50),
            smoothed: ms(50),
            min: ms(50),
            samples: 1
        })
    );
    assert_eq!(ka.next_deadline(), Some(at(40_050)));
    assert_eq!(ka.poll(at(40_049)), None);
    let (_, second) = expect_ping(&mut ka, at(40_050));
    assert_eq!(second.as_bytes(), b"00000002");
}

#[test]
fn t39_payloads_are_printable_for_any_salt() {
    // T39 / K-12
    for salt in [0, 1, 0xdead_beef, u32::MAX, 0x8000_0000] {
        for counter in [0, 1, 42, u32::MAX] {
            let p = Payload::generated(counter, salt);
            assert_eq!(p.len(), 8);
            assert!(
                p.iter()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
    }
    assert_eq!(Payload::generated(42, 0).as_bytes(), b"0000002a"); // T55's payload
    assert_eq!(Payload::generated(0, 0xdead_beef).as_bytes(), b"deadbeef");
}

#[test]
fn t40_inbound_bytes_delay_the_idle_ping() {
    // T40
    let mut ka = open();
    ka.handle(at(15_000), Input::BytesReceived);
    assert_eq!(ka.poll(at(20_000)), None);
    assert_eq!(ka.next_deadline(), Some(at(35_000)));
    assert_eq!(ka.poll(at(34_999)), None);
    expect_ping(&mut ka, at(35_000));

    // T40, Periodic: the ping comes at t0+20 s regardless.
    let mut ka = open_with(KeepaliveConfig::default().with_strategy(PingStrategy::Periodic));
    ka.handle(at(15_000), Input::BytesReceived);
    assert_eq!(ka.poll(at(19_999)), None);
    let (id, p) = expect_ping(&mut ka, at(20_000));
    ka.handle(at(20_000), Input::PingWritten(id));
    ka.handle(at(25_000), Input::PongReceived(&p));
    assert_eq!(drain(&mut ka, at(25_000)), vec![same_rtt(ms(5_000))]);
    // Periodic: the next one is 20 s after the previous ping, not after the pong.
    assert_eq!(ka.next_deadline(), Some(at(40_000)));
}

#[test]
fn t41_pong_timeout() {
    // T41
    let mut ka = open();
    let (id, _) = expect_ping(&mut ka, at(20_000));
    ka.handle(at(20_000), Input::PingWritten(id));
    assert_eq!(ka.poll(at(39_999)), None);
    assert_eq!(ka.next_deadline(), Some(at(40_000)));
    let reason = DeadReason::PongTimeout { waited: ms(20_000) };
    assert_eq!(ka.poll(at(40_000)), Some(Output::Dead(reason)));
    // Server role: `88 18 03 f3` + "keepalive ping timeout".
    let mut expected = vec![0x88, 0x18, 0x03, 0xf3];
    expected.extend_from_slice(b"keepalive ping timeout");
    assert_eq!(server_close_frame(reason), expected);
    // Dead once: nothing more, no deadline.
    assert_eq!(ka.poll(at(100_000)), None);
    assert_eq!(ka.next_deadline(), None);
}

#[test]
fn t42_inbound_bytes_push_the_pong_deadline() {
    // T42
    let mut ka = open();
    let (id, p) = expect_ping(&mut ka, at(20_000));
    ka.handle(at(20_000), Input::PingWritten(id));
    ka.handle(at(30_000), Input::BytesReceived);
    assert_eq!(ka.poll(at(40_000)), None);
    ka.handle(at(45_000), Input::BytesReceived);
    ka.handle(at(50_000), Input::PongReceived(&p));
    assert_eq!(drain(&mut ka, at(50_000)), vec![same_rtt(ms(30_000))]);

    // T42, no pong: dead 20 s after the last inbound byte (t0+45 s).
    let mut ka = open();
    let (id, _) = expect_ping(&mut ka, at(20_000));
    ka.handle(at(20_000), Input::PingWritten(id));
    ka.handle(at(30_000), Input::BytesReceived);
    assert_eq!(ka.poll(at(40_000)), None);
    ka.handle(at(45_000), Input::BytesReceived);
    assert_eq!(ka.poll(at(64_999)), None);
    assert_eq!(ka.next_deadline(), Some(at(65_000)));
    assert_eq!(
        ka.poll(at(65_000)),
        Some(Output::Dead(DeadReason::PongTimeout { waited: ms(45_000) }))
    );
}

#[test]
fn t43_truncated_pong_lenient_and_strict() {
    // T43, Lenient: liveness cleared, no RTT, next ping scheduled, never dead.
    let mut ka = open();
    let (id, p) = expect_ping(&mut ka, at(20_000));
    assert_eq!(
        p.as_bytes(),
        &[0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x30, 0x31]
    );
    ka.handle(at(20_000), Input::PingWritten(id));
    ka.handle(at(21_000), Input::PongReceived(&[0x30; 7]));
    assert_eq!(drain(&mut ka, at(21_000)), vec![Output::UnmatchedPong]);
    assert_eq!(ka.rtt(), None);
    assert_eq!(ka.outstanding_pings(), 0);
    assert_eq!(ka.next_deadline(), Some(at(41_000)));
    assert_eq!(ka.poll(at(40_999)), None);
    let (id2, p2) = expect_ping(&mut ka, at(41_000));
    assert_eq!(p2.as_bytes(), b"00000002");
    ka.handle(at(41_000), Input::PingWritten(id2));
    ka.handle(at(41_500), Input::PongReceived(&p2));
    assert_eq!(drain(&mut ka, at(41_500)), vec![same_rtt(ms(500))]);
    assert_eq!(ka.stats().unmatched_pongs, 1);

    // T43, Strict: not cleared, but counts as inbound bytes (deadline t0+21 s + 20 s).
    let mut ka = open_with(KeepaliveConfig::default().with_pong_match(PongMatch::Strict));
    let (id, _) = expect_ping(&mut ka, at(20_000));
    ka.handle(at(20_000), Input::PingWritten(id));
    ka.handle(at(21_000), Input::PongReceived(&[0x30; 7]));
    assert_eq!(drain(&mut ka, at(21_000)), vec![Output::UnmatchedPong]);
    assert_eq!(ka.outstanding_pings(), 1);
    assert_eq!(ka.poll(at(40_999)), None);
    assert_eq!(
        ka.poll(at(41_000)),
        Some(Output::Dead(DeadReason::PongTimeout { waited: ms(21_000) }))
    );
}

#[test]
fn t44_unsolicited_pongs() {
    // T44
    let mut ka = open();
    ka.handle(at(1_000), Input::PongReceived(b"anything"));
    ka.handle(at(1_000), Input::PongReceived(b""));
    assert_eq!(
        drain(&mut ka, at(1_000)),
        vec![Output::UnmatchedPong, Output::UnmatchedPong]
    );
    assert_eq!(ka.rtt(), None);
    assert_eq!(ka.stats().unmatched_pongs, 2);
    assert_eq!(ka.stats().pongs_received, 2);
}

#[test]
fn rtt_is_never_zero_when_the_pong_reads_the_same_clock_as_the_ping() {
    // A coarse or virtual clock can read the same instant for the write and the pong: the
    // round trip is reported as the smallest RTT, for the user's ping and in the stats.
    let mut ka = open();
    let (id, p) = ka.user_ping(at(1_000), None).unwrap();
    ka.handle(at(1_000), Input::PingWritten(id));
    ka.handle(at(1_000), Input::PongReceived(&p));
    assert_eq!(
        drain(&mut ka, at(1_000)),
        vec![
            Output::PingAcked {
                id,
                latency: MIN_RTT
            },
            same_rtt(MIN_RTT)
        ]
    );
    assert_eq!(ka.rtt().map(|r| r.min), Some(MIN_RTT));
}

#[test]
fn t45_duplicate_pong() {
    // T45
    let mut ka = open();
    let (id, p) = ka.user_ping(at(1_000), None).unwrap();
    ka.handle(at(1_000), Input::PingWritten(id));
    ka.handle(at(1_200), Input::PongReceived(&p));
    assert_eq!(
        drain(&mut ka, at(1_200)),
        vec![
            Output::PingAcked {
                id,
                latency: ms(200)
            },
            same_rtt(ms(200))
        ]
    );
    ka.handle(at(1_300), Input::PongReceived(&p));
    assert_eq!(drain(&mut ka, at(1_300)), vec![Output::UnmatchedPong]);
    assert_eq!(ka.stats().pings_acked, 1);
}

#[test]
fn t46_fifo_acknowledgement() {
    // T46
    let mut ka = open();
    let (a, _) = ka.user_ping(at(1_000), Some(b"a")).unwrap();
    ka.handle(at(1_000), Input::PingWritten(a));
    let (b, _) = ka.user_ping(at(2_000), Some(b"b")).unwrap();
    ka.handle(at(2_000), Input::PingWritten(b));
    ka.handle(at(3_000), Input::PongReceived(b"b"));
    assert_eq!(
        drain(&mut ka, at(3_000)),
        vec![
            Output::PingAcked {
                id: a,
                latency: ms(2_000)
            },
            Output::PingAcked {
                id: b,
                latency: ms(1_000)
            },
            same_rtt(ms(1_000)),
        ]
    );
    ka.handle(at(4_000), Input::PongReceived(b"a"));
    assert_eq!(drain(&mut ka, at(4_000)), vec![Output::UnmatchedPong]);
}

#[test]
fn t47_pong_for_a_cancelled_waiter_still_records_rtt() {
    // T47 (the machine side; the registry side is in registry::tests)
    let mut ka = open();
    let (a, _) = ka.user_ping(at(1_000), Some(b"a")).unwrap();
    ka.handle(at(1_000), Input::PingWritten(a));
    ka.handle(at(1_040), Input::PongReceived(b"a"));
    assert_eq!(
        drain(&mut ka, at(1_040)),
        vec![
            Output::PingAcked {
                id: a,
                latency: ms(40)
            },
            same_rtt(ms(40))
        ]
    );
    assert_eq!(ka.outstanding_pings(), 0);
    assert_eq!(ka.rtt().map(|r| r.last), Some(ms(40)));
}

#[test]
fn t48_duplicate_too_many_too_long() {
    // T48
    let mut ka = open();
    ka.user_ping(at(1), Some(b"a")).unwrap();
    assert_eq!(
        ka.user_ping(at(2), Some(b"a")),
        Err(PingError::DuplicatePingPayload)
    );
    let mut results = Vec::new();
    for i in 0..17u8 {
        results.push(ka.user_ping(at(3), Some(&[b'x', i])).map(|_| ()));
    }
    // "a" + 15 = 16 outstanding; the 17th outstanding and beyond are refused.
    assert!(results[..15].iter().all(Result::is_ok));
    assert_eq!(results[15], Err(PingError::TooManyOutstandingPings));
    assert_eq!(results[16], Err(PingError::TooManyOutstandingPings));
    assert_eq!(
        ka.user_ping(at(4), Some(&[0u8; 126])),
        Err(PingError::PayloadTooLong)
    );
    assert!(Payload::new(&[0u8; 125]).is_ok());
    // K-11: keepalive keeps its reserved slot.
    let (_, p) = expect_ping(&mut ka, at(20_000));
    assert_eq!(p.len(), 8);
    assert_eq!(ka.outstanding_pings(), 17);
}

#[test]
fn t49_write_stall() {
    // T49
    let mut ka = open();
    ka.handle(at(10_000), Input::OutputPending(true));
    expect_ping(&mut ka, at(20_000)); // queued, never written
    assert_eq!(ka.poll(at(29_999)), None);
    assert_eq!(ka.next_deadline(), Some(at(30_000)));
    assert_eq!(
        ka.poll(at(30_000)),
        Some(Output::Dead(DeadReason::WriteStalled {
            waited: ms(20_000)
        }))
    );
    let reason = DeadReason::WriteStalled { waited: ms(20_000) };
    assert_eq!(reason.close_code(), 1011);
    assert_eq!(reason.close_reason(), "keepalive write stalled");
}

#[test]
fn t50_slow_but_draining_link() {
    // T50
    let mut ka = open();
    ka.handle(at(10_000), Input::OutputPending(true));
    let mut ping = None;
    let mut t = 10_000;
    while t < 60_000 {
        t += 5_000;
        ka.handle(at(t), Input::WriteProgress);
        for out in drain(&mut ka, at(t)) {
            match out {
                Output::SendPing { id, payload } => {
                    assert_eq!(t, 20_000);
                    ping = Some((id, payload));
                }
                other => panic!("unexpected {other:?} at {t}"),
            }
        }
    }
    let (id, p) = ping.unwrap();
    ka.handle(at(60_000), Input::PingWritten(id));
    ka.handle(at(60_000), Input::OutputPending(false));
    assert_eq!(ka.poll(at(60_000)), None);
    ka.handle(at(61_000), Input::PongReceived(&p));
    assert_eq!(drain(&mut ka, at(61_000)), vec![same_rtt(ms(1_000))]);
}

#[test]
fn t51_read_pause_suspends_the_pong_timeout() {
    // T51
    let mut ka = open();
    let (id, _) = expect_ping(&mut ka, at(20_000));
    ka.handle(at(20_000), Input::PingWritten(id));
    ka.handle(at(21_000), Input::ReadPaused);
    assert_eq!(ka.poll(at(50_000)), None);
    ka.handle(at(50_000), Input::ReadResumed);
    assert_eq!(ka.next_deadline(), Some(at(70_000)));
    assert_eq!(ka.poll(at(69_999)), None);
    assert_eq!(
        ka.poll(at(70_000)),
        Some(Output::Dead(DeadReason::PongTimeout { waited: ms(50_000) }))
    );
}

#[test]
fn t52_clock_going_backwards() {
    // T52
    let s = Duration::from_secs;
    let mut ka = KeepAlive::new(KeepaliveConfig::default(), 0);
    ka.handle(s(100), Input::Opened);
    assert_eq!(ka.poll(s(100)), None);
    assert_eq!(ka.poll(s(90)), None);
    ka.handle(s(80), Input::BytesReceived);
    assert_eq!(ka.poll(s(80)), None);
    // last_rx did not move backwards: the ping is still due at 120 s.
    assert_eq!(ka.next_deadline(), Some(s(120)));
    assert_eq!(ka.poll(s(119)), None);
    let (id, p) = expect_ping(&mut ka, s(120));
    ka.handle(s(120), Input::PingWritten(id));
    // A pong "before" the write measures the smallest RTT, not zero, a panic or a huge value.
    ka.handle(s(110), Input::PongReceived(&p));
    assert_eq!(drain(&mut ka, s(110)), vec![same_rtt(MIN_RTT)]);
}

#[test]
fn t53_close_stops_keepalive_and_fails_user_pings() {
    // T53
    let mut ka = open();
    let (a, _) = ka.user_ping(at(1_000), Some(b"a")).unwrap();
    let (b, _) = ka.user_ping(at(2_000), None).unwrap();
    ka.handle(at(5_000), Input::CloseStarted);
    assert_eq!(ka.next_deadline(), None);
    assert_eq!(ka.poll(at(1_000_000)), None);
    assert_eq!(ka.user_ping(at(1_000_000), None), Err(PingError::NotOpen));
    ka.handle(at(1_000_001), Input::Closed);
    assert_eq!(
        drain(&mut ka, at(1_000_001)),
        vec![Output::PingFailed { id: a }, Output::PingFailed { id: b }]
    );
    assert_eq!(ka.next_deadline(), None);
    // Nothing after Closed.
    ka.handle(at(1_000_002), Input::PongReceived(b"a"));
    assert_eq!(ka.poll(at(1_000_002)), None);
    assert_eq!(ka.stats().pings_failed, 2);
}

#[test]
fn t53_user_pings_still_acked_while_closing() {
    // T53 / K-3: user waiters stay until Closed.
    let mut ka = open();
    let (a, _) = ka.user_ping(at(1_000), Some(b"a")).unwrap();
    ka.handle(at(1_000), Input::PingWritten(a));
    ka.handle(at(2_000), Input::CloseStarted);
    ka.handle(at(2_500), Input::PongReceived(b"a"));
    assert_eq!(
        drain(&mut ka, at(2_500)),
        vec![
            Output::PingAcked {
                id: a,
                latency: ms(1_500)
            },
            same_rtt(ms(1_500))
        ]
    );
    ka.handle(at(3_000), Input::Closed);
    assert_eq!(drain(&mut ka, at(3_000)), vec![]);
}

#[test]
fn t54_disabled_interval_and_timeout() {
    // T54, ping_interval = None: no pings for an hour, user pings still work.
    let mut ka = open_with(KeepaliveConfig::default().with_ping_interval(None));
    assert_eq!(ka.next_deadline(), None);
    for minute in 0..=60 {
        assert_eq!(ka.poll(at(minute * 60_000)), None);
    }
    let (id, p) = ka.user_ping(at(3_600_000), None).unwrap();
    ka.handle(at(3_600_000), Input::PingWritten(id));
    ka.handle(at(3_600_010), Input::PongReceived(&p));
    assert_eq!(
        drain(&mut ka, at(3_600_010)),
        vec![
            Output::PingAcked {
                id,
                latency: ms(10)
            },
            same_rtt(ms(10))
        ]
    );

    // T54, pong_timeout = None: a ping every 20 s, never Dead, at most one outstanding.
    let mut ka = open_with(KeepaliveConfig::default().with_pong_timeout(None));
    let mut sent = Vec::new();
    for sec in 0..=200 {
        for out in drain(&mut ka, at(sec * 1_000)) {
            match out {
                Output::SendPing { id, .. } => {
                    sent.push(sec);
                    ka.handle(at(sec * 1_000), Input::PingWritten(id));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(ka.outstanding_pings() <= 1);
    }
    assert_eq!(sent, vec![20, 40, 60, 80, 100, 120, 140, 160, 180, 200]);
}

#[test]
fn unsolicited_pong_heartbeat() {
    // K-21
    let mut ka = open_with(KeepaliveConfig::default().with_heartbeat(Heartbeat::UnsolicitedPong));
    assert_eq!(ka.poll(at(19_999)), None);
    assert_eq!(
        ka.poll(at(20_000)),
        Some(Output::SendPong {
            payload: Payload::EMPTY
        })
    );
    assert_eq!(ka.poll(at(20_000)), None);
    assert_eq!(ka.next_deadline(), Some(at(40_000)));
    assert_eq!(
        drain(&mut ka, at(500_000)),
        vec![Output::SendPong {
            payload: Payload::EMPTY
        }]
    );
    assert_eq!(ka.stats().heartbeat_pongs_sent, 2);
}

#[test]
fn ping_flood_guard() {
    // K-22
    let guard = PingFloodGuard::new(3, ms(1_000));
    let mut ka = open_with(KeepaliveConfig::default().with_ping_flood(Some(guard)));
    for t in [100, 200, 300] {
        ka.handle(at(t), Input::PingReceived);
    }
    assert_eq!(ka.poll(at(300)), None);
    // A new window starts at t0+1.1 s.
    for t in [1_100, 1_200, 1_300] {
        ka.handle(at(t), Input::PingReceived);
    }
    assert_eq!(ka.poll(at(1_300)), None);
    ka.handle(at(1_400), Input::PingReceived);
    let dead = DeadReason::PingFlood {
        pings: 4,
        window: ms(1_000),
    };
    assert_eq!(drain(&mut ka, at(1_400)), vec![Output::Dead(dead)]);
    assert_eq!(
        (dead.close_code(), dead.close_reason()),
        (1008, "ping flood")
    );
    assert_eq!(ka.next_deadline(), None);

    // Off by default.
    let mut ka = open();
    for t in 0..1_000 {
        ka.handle(at(t), Input::PingReceived);
    }
    assert_eq!(ka.poll(at(1_000)), None);
    assert_eq!(ka.stats().pings_received, 1_000);
}

#[test]
fn user_pong_after_keepalive_ping_acks_both_fifo() {
    // K-20, K-9 (Strict so that only FIFO can clear the keepalive wait)
    let mut ka = open_with(KeepaliveConfig::default().with_pong_match(PongMatch::Strict));
    let (k, _) = expect_ping(&mut ka, at(20_000));
    ka.handle(at(20_000), Input::PingWritten(k));
    let (u, _) = ka.user_ping(at(21_000), Some(b"user")).unwrap();
    ka.handle(at(21_000), Input::PingWrittenPayload(b"user"));
    ka.handle(at(21_100), Input::PongReceived(b"user"));
    assert_eq!(
        drain(&mut ka, at(21_100)),
        vec![
            Output::PingAcked {
                id: u,
                latency: ms(100)
            },
            same_rtt(ms(100))
        ]
    );
    assert_eq!(ka.outstanding_pings(), 0);
    assert_eq!(ka.next_deadline(), Some(at(41_100)));
}

#[test]
fn rtt_ewma_and_min() {
    // K-18
    let mut ka = open();
    for (i, (sent, rtt_ms)) in [(1_000u64, 80u64), (2_000, 160), (3_000, 40)]
        .into_iter()
        .enumerate()
    {
        let (id, p) = ka.user_ping(at(sent), None).unwrap();
        ka.handle(at(sent), Input::PingWritten(id));
        ka.handle(at(sent + rtt_ms), Input::PongReceived(&p));
        let outs = drain(&mut ka, at(sent + rtt_ms));
        let expected = match i {
            0 => rtt(ms(80), ms(80), ms(80)),
            1 => rtt(ms(160), ms(90), ms(80)), // 80 + (160 - 80) / 8
            _ => rtt(ms(40), Duration::from_micros(83_750), ms(40)), // (7 * 90 + 40) / 8
        };
        assert_eq!(outs.last(), Some(&expected));
    }
    assert_eq!(ka.rtt().map(|r| r.samples), Some(3));
}

#[test]
fn unwritten_ping_falls_back_to_queue_time() {
    // K-6 fallback: no PingWritten and no output pending -> the timer runs from the queue time,
    // and the RTT is measured from it.
    let mut ka = open();
    let (_, p) = expect_ping(&mut ka, at(20_000));
    assert_eq!(ka.next_deadline(), Some(at(40_000)));
    ka.handle(at(20_300), Input::PongReceived(&p));
    assert_eq!(drain(&mut ka, at(20_300)), vec![same_rtt(ms(300))]);
}

#[test]
fn cancel_ping_forgets_a_user_ping() {
    let mut ka = open();
    let (a, p) = ka.user_ping(at(1), Some(b"a")).unwrap();
    let (k, _) = expect_ping(&mut ka, at(20_000));
    assert!(!ka.cancel_ping(k), "keepalive pings are not user pings");
    assert!(ka.cancel_ping(a));
    assert!(!ka.cancel_ping(a));
    ka.handle(at(20_001), Input::Closed);
    assert_eq!(drain(&mut ka, at(20_001)), vec![]);
    assert_eq!(p.as_bytes(), b"a");
}

#[test]
fn not_open_before_the_handshake() {
    let mut ka = KeepAlive::new(KeepaliveConfig::default(), 7);
    assert_eq!(ka.user_ping(at(0), None), Err(PingError::NotOpen));
    assert_eq!(ka.poll(at(100_000)), None);
    assert_eq!(ka.next_deadline(), None);
}

#[test]
fn zero_interval_does_not_spin() {
    let mut ka = open_with(
        KeepaliveConfig::default()
            .with_ping_interval(Some(Duration::ZERO))
            .with_pong_timeout(None),
    );
    assert_eq!(drain(&mut ka, at(0)).len(), 0);
    assert_eq!(drain(&mut ka, at(1)).len(), 1);
    assert_eq!(ka.next_deadline(), Some(at(2)));
}

#[test]
fn unmatched_pong_events_are_bounded() {
    let mut ka = open();
    for _ in 0..10_000 {
        ka.handle(at(1), Input::PongReceived(b"x"));
    }
    assert_eq!(drain(&mut ka, at(1)).len(), 16);
    assert_eq!(ka.stats().unmatched_pongs, 10_000);
}

// --- property tests ---

#[derive(Debug, Clone)]
enum Op {
    Opened,
    Bytes,
    /// A pong echoing the n-th payload we issued (mod count), possibly truncated.
    EchoPong(usize, usize),
    RandomPong(Vec<u8>),
    PingReceived,
    WrittenLatest,
    WrittenPayload(usize),
    WriteProgress,
    OutputPending(bool),
    ReadPaused,
    ReadResumed,
    CloseStarted,
    Closed,
    UserPing(Option<Vec<u8>>),
    Poll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Opened),
        3 => Just(Op::Bytes),
        4 => (any::<usize>(), 0usize..10).prop_map(|(i, cut)| Op::EchoPong(i, cut)),
        1 => proptest::collection::vec(any::<u8>(), 0..10).prop_map(Op::RandomPong),
        1 => Just(Op::PingReceived),
        2 => Just(Op::WrittenLatest),
        1 => any::<usize>().prop_map(Op::WrittenPayload),
        2 => Just(Op::WriteProgress),
        1 => any::<bool>().prop_map(Op::OutputPending),
        1 => Just(Op::ReadPaused),
        1 => Just(Op::ReadResumed),
        1 => Just(Op::CloseStarted),
        1 => Just(Op::Closed),
        3 => proptest::option::of(proptest::collection::vec(b'a'..b'e', 0..3)).prop_map(Op::UserPing),
        6 => Just(Op::Poll),
    ]
}

fn config() -> impl Strategy<Value = KeepaliveConfig> {
    let d = || proptest::option::of((0u64..40_000).prop_map(Duration::from_millis));
    (
        d(),
        d(),
        any::<bool>(),
        any::<bool>(),
        d(),
        0usize..4,
        any::<bool>(),
        proptest::option::of((0u32..4, 0u64..5_000)),
    )
        .prop_map(|(iv, pt, periodic, strict, stall, max, pong_hb, flood)| {
            KeepaliveConfig::default()
                .with_ping_interval(iv)
                .with_pong_timeout(pt)
                .with_strategy(if periodic {
                    PingStrategy::Periodic
                } else {
                    PingStrategy::WhenIdle
                })
                .with_pong_match(if strict {
                    PongMatch::Strict
                } else {
                    PongMatch::Lenient
                })
                .with_write_stall_timeout(stall)
                .with_max_outstanding_pings(max)
                .with_heartbeat(if pong_hb {
                    Heartbeat::UnsolicitedPong
                } else {
                    Heartbeat::Ping
                })
                .with_ping_flood(flood.map(|(n, w)| PingFloodGuard::new(n, ms(w))))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_inputs_never_panic_spin_or_double_complete(
        config in config(),
        salt in any::<u32>(),
        steps in proptest::collection::vec((op(), -5_000i64..30_000), 1..120),
    ) {
        let mut ka = KeepAlive::new(config, salt);
        let mut clock: i64 = 1_000_000;
        let mut issued: Vec<(PingId, Payload)> = Vec::new();
        let mut user_ids: Vec<PingId> = Vec::new();
        let mut completed: Vec<PingId> = Vec::new();
        let mut closed = false;
        for (op, dt) in steps {
            // The clock mostly moves forward, sometimes backwards (K-4).
            clock = (clock + dt).max(0);
            let now = Duration::from_millis(clock as u64);
            match op {
                Op::Opened => ka.handle(now, Input::Opened),
                Op::Bytes => ka.handle(now, Input::BytesReceived),
                Op::EchoPong(i, cut) => {
                    if issued.is_empty() {
                        ka.handle(now, Input::PongReceived(b""));
                    } else {
                        let p = issued[i % issued.len()].1;
                        let len = p.len().saturating_sub(cut % 3);
                        ka.handle(now, Input::PongReceived(&p[..len]));
                    }
                }
                Op::RandomPong(p) => ka.handle(now, Input::PongReceived(&p)),
                Op::PingReceived => ka.handle(now, Input::PingReceived),
                Op::WrittenLatest => {
                    if let Some((id, _)) = issued.last() {
                        ka.handle(now, Input::PingWritten(*id));
                    }
                }
                Op::WrittenPayload(i) => {
                    if !issued.is_empty() {
                        let p = issued[i % issued.len()].1;
                        ka.handle(now, Input::PingWrittenPayload(&p));
                    }
                }
                Op::WriteProgress => ka.handle(now, Input::WriteProgress),
                Op::OutputPending(b) => ka.handle(now, Input::OutputPending(b)),
                Op::ReadPaused => ka.handle(now, Input::ReadPaused),
                Op::ReadResumed => ka.handle(now, Input::ReadResumed),
                Op::CloseStarted => ka.handle(now, Input::CloseStarted),
                Op::Closed => {
                    ka.handle(now, Input::Closed);
                    closed = true;
                }
                Op::UserPing(p) => {
                    if let Ok((id, payload)) = ka.user_ping(now, p.as_deref()) {
                        issued.push((id, payload));
                        user_ids.push(id);
                    }
                }
                Op::Poll => {}
            }
            // Drain, as a driver does after every input.
            let mut polls = 0;
            loop {
                polls += 1;
                prop_assert!(polls < 200, "poll does not settle");
                match ka.poll(now) {
                    None => break,
                    Some(Output::SendPing { id, payload }) => {
                        prop_assert_eq!(payload.len(), 8);
                        prop_assert!(payload.iter().all(|b| (0x21..=0x7e).contains(b)));
                        issued.push((id, payload));
                    }
                    Some(Output::PingAcked { id, .. }) | Some(Output::PingFailed { id }) => {
                        prop_assert!(user_ids.contains(&id), "completion of a non-user ping");
                        prop_assert!(!completed.contains(&id), "ping completed twice");
                        completed.push(id);
                    }
                    Some(_) => {}
                }
            }
            // K-17: after poll returned None, no deadline is in the past.
            if let Some(d) = ka.next_deadline() {
                prop_assert!(d > now, "deadline {d:?} not after {now:?}");
            }
            prop_assert!(ka.outstanding_pings() <= ka.config().max_outstanding_pings + 1);
        }
        if closed {
            // K-10: after Closed, every user ping completed exactly once.
            prop_assert_eq!(completed.len(), user_ids.len());
            prop_assert_eq!(ka.next_deadline(), None);
        }
    }
}

#[test]
fn shrink_to_fit_frees_the_queues_of_an_answered_ping_and_keeps_an_outstanding_one() {
    let mut ka = open();
    let (id, _) = expect_ping(&mut ka, at(20_000));
    ka.handle(at(20_000), Input::PingWritten(id));
    ka.shrink_to_fit();
    assert_eq!(
        ka.outstanding_pings(),
        1,
        "the ping waiting for its pong stays"
    );
    ka.handle(at(20_050), Input::PongReceived(b"00000001"));
    assert_eq!(drain(&mut ka, at(20_050)), vec![same_rtt(ms(50))]);
    assert!(ka.outstanding.capacity() > 0 && ka.events.capacity() > 0);

    ka.shrink_to_fit();
    assert_eq!((ka.outstanding.capacity(), ka.events.capacity()), (0, 0));
    // The next keepalive ping is still due one interval after the last pong.
    let (id, payload) = expect_ping(&mut ka, at(40_050));
    assert_eq!(payload.as_bytes(), b"00000002");
    ka.handle(at(40_050), Input::PingWritten(id));
    assert_eq!(ka.outstanding_pings(), 1);
}
