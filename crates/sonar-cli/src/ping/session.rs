//! The sans-I/O ping session: which ping is due, which pong answers it, what to echo and what
//! to warn about. It owns no socket, clock or timer (like h2's `proto/ping_pong.rs` and
//! `sonar-keepalive`'s machine): the driver feeds it what happened with the time as a
//! [`Duration`] since an origin of its choosing, and acts on what [`Session::poll`] returns.
//!
//! # Driving it
//!
//! 1. [`poll`](Session::poll) until `None`: write each frame asked for (then feed
//!    [`Input::Written`] or [`Input::WriteFailed`]) and print each line. Between the frames
//!    of one read, act on [`next_action`](Session::next_action) instead: deadlines are
//!    looked at once all of them are handled.
//! 2. Stop once [`is_done`](Session::is_done).
//! 3. Wait for bytes from the server or [`next_deadline`](Session::next_deadline), feed what
//!    came ([`handle`](Session::handle)), and go to 1.
//!
//! ```text
//! now=0    poll -> Ping("…01")          driver writes it, feeds Written(PING)
//! now=3ms  handle(Item(pong "…01"))     poll -> Report(Pong { rtt: 3 ms })
//! now=1s   poll -> Ping("…02")          the interval is up
//! ```

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use sonar_core::OpCode;

use super::frames::{Frame, Item, MAX_KEPT, echoes, pong_problems};
use super::report::Line;

/// Payloads of earlier pings remembered to recognise late pongs.
const HISTORY: usize = 64;
/// How long the goodbye (our Close, the server's answer) may take.
const GOODBYE: Duration = Duration::from_secs(1);
/// Alphabet of ping payloads: printable, unambiguous.
const ALPHABET: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// The status of our own Close: normal closure.
const NORMAL_CLOSURE: u16 = 1000;

/// What to ping and how often (the command's `-c`, `-i`, `-W`, `-s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Pings to send; `None` until interrupted.
    pub(crate) count: Option<u64>,
    /// From one ping's write to the next ping.
    pub(crate) interval: Duration,
    /// How long a ping waits for its pong.
    pub(crate) timeout: Duration,
    /// Payload bytes per ping (at most 125).
    pub(crate) size: u8,
}

/// What happened, as the driver saw it.
#[derive(Debug)]
pub(crate) enum Input {
    /// The frame reader found a frame (or gave up on the stream).
    Item(Item),
    /// The server ended the stream without a Close frame.
    Eof,
    /// Reading failed.
    ReadFailed(io::Error),
    /// The frame with this opcode that [`Session::poll`] asked for is written.
    Written(OpCode),
    /// Writing failed.
    WriteFailed(WriteFailure),
    /// The user pressed Ctrl-C: no more pings, say goodbye.
    Interrupted,
}

/// Why a write failed.
#[derive(Debug)]
pub(crate) enum WriteFailure {
    /// The transport failed.
    Io(io::Error),
    /// The server stopped reading: the write took longer than the limit.
    TimedOut(Duration),
}

/// What the driver must do.
#[derive(Debug)]
pub(crate) enum Action {
    /// Write a Ping with this payload, then feed [`Input::Written`]`(PING)`.
    Ping(Vec<u8>),
    /// Answer the server's Ping with a Pong carrying this payload.
    Pong(Vec<u8>),
    /// Write a Close with this body (ours, or the echo of the server's code).
    Close(Vec<u8>),
    /// Print this line.
    Report(Line),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The next ping is due at this time.
    Idle { due: Duration },
    /// A Ping was asked for and is being written.
    Writing,
    /// The outstanding ping was written at `sent_at` and waits for its pong.
    Waiting { sent_at: Duration },
    /// Our Close was asked for and is being written.
    Closing,
    /// Our Close is written: the server's answer may come until `until`.
    Goodbye { until: Duration },
    /// Over: nothing is read or sent any more.
    Done,
}

#[derive(Debug)]
struct Outstanding {
    seq: u64,
    payload: Vec<u8>,
}

/// The counts of a session, for the statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Pings written.
    pub(crate) sent: u64,
    /// Pongs that answered a ping in time (conforming or not).
    pub(crate) received: u64,
    /// Pongs that answered a ping in time and conform to RFC 6455.
    pub(crate) conforming: u64,
    /// Frames that broke the protocol outside pongs (reserved opcodes, malformed headers,
    /// oversized pings).
    pub(crate) violations: u64,
    rtt_min: Option<Duration>,
    rtt_max: Duration,
    rtt_total: Duration,
}

impl Summary {
    /// The statistics lines, as ping(8) prints them.
    pub(crate) fn lines(&self) -> Vec<Line> {
        let mut lines = vec![
            Line::StatisticsTitle,
            Line::Totals {
                sent: self.sent,
                received: self.received,
                conforming: self.conforming,
            },
        ];
        if let Some(min) = self.rtt_min {
            lines.push(Line::Rtt {
                min,
                max: self.rtt_max,
                total: self.rtt_total,
                count: self.received,
            });
        }
        lines
    }

    /// Every ping got a conforming pong and the server broke no rule: exit status 0.
    pub(crate) fn perfect(&self) -> bool {
        self.sent > 0 && self.conforming == self.sent && self.violations == 0
    }

    fn record(&mut self, rtt: Duration, conforming: bool) {
        self.received += 1;
        self.conforming += u64::from(conforming);
        self.rtt_min = Some(self.rtt_min.map_or(rtt, |m| m.min(rtt)));
        self.rtt_max = self.rtt_max.max(rtt);
        self.rtt_total = self.rtt_total.saturating_add(rtt);
    }
}

/// One `sonar ping` run.
#[derive(Debug)]
pub(crate) struct Session {
    plan: Plan,
    rng: StdRng,
    phase: Phase,
    /// The latest `now` seen: time never goes backwards inside the session.
    now: Duration,
    seq: u64,
    outstanding: Option<Outstanding>,
    history: VecDeque<(u64, Vec<u8>)>,
    close_sent: bool,
    actions: VecDeque<Action>,
    summary: Summary,
}

impl Session {
    /// A session whose first ping is due at `now`; `rng` makes the payloads.
    pub(crate) fn new(plan: Plan, rng: StdRng, now: Duration) -> Self {
        Session {
            plan,
            rng,
            phase: Phase::Idle { due: now },
            now,
            seq: 0,
            outstanding: None,
            history: VecDeque::with_capacity(HISTORY),
            close_sent: false,
            actions: VecDeque::new(),
            summary: Summary::default(),
        }
    }

    /// The counts so far.
    pub(crate) fn summary(&self) -> Summary {
        self.summary
    }

    /// Over: the driver stops once [`poll`](Self::poll) has nothing more.
    pub(crate) fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// When [`poll`](Self::poll) has something to do without new input.
    pub(crate) fn next_deadline(&self) -> Option<Duration> {
        match self.phase {
            Phase::Idle { due } => Some(due),
            Phase::Waiting { sent_at } => Some(sent_at.saturating_add(self.plan.timeout)),
            Phase::Goodbye { until } => Some(until),
            Phase::Writing | Phase::Closing | Phase::Done => None,
        }
    }

    /// The next thing to do at `now`: what earlier input asked for first, then what a
    /// passed deadline asks for.
    pub(crate) fn poll(&mut self, now: Duration) -> Option<Action> {
        let now = self.advance(now);
        if let Some(action) = self.next_action() {
            return Some(action);
        }
        match self.phase {
            Phase::Idle { due } if now >= due => {
                self.seq += 1;
                let payload = make_payload(self.seq, usize::from(self.plan.size), &mut self.rng);
                self.outstanding = Some(Outstanding {
                    seq: self.seq,
                    payload: payload.clone(),
                });
                self.phase = Phase::Writing;
                Some(Action::Ping(payload))
            }
            Phase::Waiting { sent_at } if now >= sent_at.saturating_add(self.plan.timeout) => {
                self.outstanding = None;
                self.after_ping(sent_at);
                Some(Action::Report(Line::NoPong {
                    seq: self.seq,
                    timeout: self.plan.timeout,
                }))
            }
            Phase::Goodbye { until } if now >= until => {
                self.phase = Phase::Done;
                None
            }
            _ => None,
        }
    }

    /// Only what earlier input asked for, no deadline work: for the frames of one read,
    /// which are all handled before a deadline is looked at (as they arrived together).
    pub(crate) fn next_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Feeds what happened at `now`; what it calls for comes out of [`poll`](Self::poll).
    pub(crate) fn handle(&mut self, now: Duration, input: Input) {
        let now = self.advance(now);
        match input {
            // A failed write is reported even after the end (the echo of a Close).
            Input::WriteFailed(failure) => {
                self.report(match failure {
                    WriteFailure::Io(e) => Line::ConnectionFailed(e),
                    WriteFailure::TimedOut(limit) => Line::WriteTimedOut(limit),
                });
                self.end();
            }
            _ if self.phase == Phase::Done => {}
            Input::Item(Item::Frame(frame)) => self.on_frame(now, &frame),
            Input::Item(Item::Malformed) => {
                self.summary.violations += 1;
                self.report(Line::Malformed);
                self.end();
            }
            Input::Eof => {
                self.report(Line::Eof);
                self.end();
            }
            Input::ReadFailed(e) => {
                self.report(Line::ConnectionFailed(e));
                self.end();
            }
            Input::Written(opcode) => self.on_written(now, opcode),
            Input::Interrupted => {
                if matches!(self.phase, Phase::Idle { .. } | Phase::Waiting { .. }) {
                    // An interrupted wait loses nothing: the ping is sent, not counted lost.
                    self.outstanding = None;
                    self.say_goodbye();
                }
            }
        }
    }

    fn advance(&mut self, now: Duration) -> Duration {
        self.now = self.now.max(now);
        self.now
    }

    fn report(&mut self, line: Line) {
        self.actions.push_back(Action::Report(line));
    }

    fn end(&mut self) {
        self.outstanding = None;
        self.phase = Phase::Done;
    }

    fn on_written(&mut self, now: Duration, opcode: OpCode) {
        match (self.phase, opcode) {
            (Phase::Writing, OpCode::PING) => {
                let Some(out) = &self.outstanding else {
                    return;
                };
                if self.history.len() == HISTORY {
                    self.history.pop_front();
                }
                self.history.push_back((out.seq, out.payload.clone()));
                self.summary.sent += 1;
                self.phase = Phase::Waiting { sent_at: now };
            }
            (Phase::Closing, OpCode::CLOSE) => {
                self.phase = Phase::Goodbye {
                    until: now.saturating_add(GOODBYE),
                };
            }
            _ => {}
        }
    }

    /// The outstanding ping (written at `sent_at`) is answered or lost: the next one is
    /// due an interval after it, or it was the last.
    fn after_ping(&mut self, sent_at: Duration) {
        if self.plan.count.is_none_or(|c| self.seq < c) {
            self.phase = Phase::Idle {
                due: sent_at.saturating_add(self.plan.interval),
            };
        } else {
            self.say_goodbye();
        }
    }

    /// Our Close (1000), unless the server's Close already ended the connection.
    fn say_goodbye(&mut self) {
        if self.close_sent {
            self.end();
            return;
        }
        self.close_sent = true;
        self.actions
            .push_back(Action::Close(NORMAL_CLOSURE.to_be_bytes().to_vec()));
        self.phase = Phase::Closing;
    }

    fn on_frame(&mut self, now: Duration, frame: &Frame) {
        match frame.header.opcode {
            OpCode::PONG => self.on_pong(now, frame),
            OpCode::PING if frame.header.len <= MAX_KEPT as u64 => {
                self.actions.push_back(Action::Pong(frame.payload.clone()));
            }
            OpCode::PING => {
                self.summary.violations += 1;
                self.report(Line::OversizedPing {
                    bytes: frame.header.len,
                });
            }
            OpCode::CLOSE => self.on_close(frame),
            OpCode::TEXT | OpCode::BINARY | OpCode::CONTINUATION => {}
            other => {
                self.summary.violations += 1;
                self.report(Line::ReservedOpcode(other.as_u8()));
            }
        }
    }

    fn on_close(&mut self, frame: &Frame) {
        let (code, reason) = match frame.payload.split_first_chunk::<2>() {
            Some((code, reason)) => (
                Some(u16::from_be_bytes(*code)),
                String::from_utf8_lossy(reason).into_owned(),
            ),
            None => (None, String::new()),
        };
        // The answer to our own Close is the normal end: no line, no echo.
        if !self.close_sent {
            self.close_sent = true;
            self.report(Line::ServerClosed { code, reason });
            let echo = code.map_or_else(Vec::new, |c| c.to_be_bytes().to_vec());
            self.actions.push_back(Action::Close(echo));
        }
        self.end();
    }

    fn on_pong(&mut self, now: Duration, frame: &Frame) {
        let Phase::Waiting { sent_at } = self.phase else {
            // No ping waits: a late answer to an earlier one, or a heartbeat.
            self.on_stray_pong(frame);
            return;
        };
        let Some(out) = self.outstanding.take() else {
            return;
        };
        // A late answer to an earlier ping: the outstanding one still waits. Any other
        // pong is an answer to the outstanding ping, broken or not: it counts.
        if !echoes(frame, &out.payload)
            && let Some(seq) = self.earlier_ping(frame)
        {
            self.outstanding = Some(out);
            self.report(Line::LatePong { seq });
            return;
        }
        let rtt = now.saturating_sub(sent_at);
        let problems = pong_problems(frame, &out.payload);
        let conforming = problems.is_empty();
        for problem in problems {
            self.report(Line::PongProblem {
                seq: out.seq,
                problem,
            });
        }
        self.report(Line::Pong {
            bytes: frame.header.len,
            seq: out.seq,
            rtt,
            conforming,
        });
        self.summary.record(rtt, conforming);
        self.after_ping(sent_at);
    }

    fn on_stray_pong(&mut self, frame: &Frame) {
        match self.earlier_ping(frame) {
            Some(seq) => self.report(Line::LatePong { seq }),
            None => self.report(Line::UnsolicitedPong {
                bytes: frame.header.len,
            }),
        }
    }

    /// The earlier ping whose payload `frame` echoes exactly.
    fn earlier_ping(&self, frame: &Frame) -> Option<u64> {
        self.history
            .iter()
            .find(|(_, sent)| echoes(frame, sent))
            .map(|(seq, _)| *seq)
    }
}

/// A unique, printable payload: random characters ending in `seq` in base 62.
fn make_payload(seq: u64, size: usize, rng: &mut StdRng) -> Vec<u8> {
    let mut payload: Vec<u8> = (0..size)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
        .collect();
    let mut n = seq;
    for b in payload.iter_mut().rev() {
        *b = ALPHABET[(n % 62) as usize];
        n /= 62;
        if n == 0 {
            break;
        }
    }
    payload
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use proptest::prelude::*;
    use rand::SeedableRng;
    use sonar_core::FrameHeader;

    use super::*;
    use crate::ping::frames::Problem;

    /// An arbitrary origin: nothing depends on `t0 == 0`.
    const T0: Duration = Duration::from_secs(1_000);

    fn at(ms: u64) -> Duration {
        T0 + Duration::from_millis(ms)
    }

    fn plan(count: Option<u64>) -> Plan {
        Plan {
            count,
            interval: Duration::from_millis(1_000),
            timeout: Duration::from_millis(300),
            size: 8,
        }
    }

    fn session(count: Option<u64>) -> Session {
        Session::new(plan(count), StdRng::seed_from_u64(7), at(0))
    }

    /// A server frame as the frame reader hands it over.
    fn raw_frame(opcode: OpCode, payload: &[u8]) -> Frame {
        Frame {
            header: FrameHeader {
                fin: true,
                rsv: 0,
                opcode,
                mask: None,
                len: payload.len() as u64,
            },
            payload: payload.to_vec(),
        }
    }

    fn frame(opcode: OpCode, payload: &[u8]) -> Input {
        Input::Item(Item::Frame(raw_frame(opcode, payload)))
    }

    fn pong(payload: &[u8]) -> Input {
        frame(OpCode::PONG, payload)
    }

    /// Every action due at `now`.
    fn drain(s: &mut Session, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        for _ in 0..1_000 {
            match s.poll(now) {
                Some(a) => out.push(a),
                None => return out,
            }
        }
        panic!("poll never returned None");
    }

    /// Polls the ping due at `now` and reports it written; returns its payload.
    fn send_ping(s: &mut Session, now: Duration) -> Vec<u8> {
        match s.poll(now) {
            Some(Action::Ping(payload)) => {
                s.handle(now, Input::Written(OpCode::PING));
                payload
            }
            other => panic!("expected a ping at {now:?}, got {other:?}"),
        }
    }

    /// Polls our Close at `now` and reports it written.
    fn send_close(s: &mut Session, now: Duration) {
        match s.poll(now) {
            Some(Action::Close(body)) => {
                assert_eq!(body, 1000u16.to_be_bytes());
                s.handle(now, Input::Written(OpCode::CLOSE));
            }
            other => panic!("expected our close at {now:?}, got {other:?}"),
        }
    }

    fn lines(actions: Vec<Action>) -> Vec<Line> {
        actions
            .into_iter()
            .map(|a| match a {
                Action::Report(line) => line,
                other => panic!("expected only lines, got {other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_first_ping_is_due_at_once_and_its_pong_reports_the_rtt() {
        let mut s = session(Some(3));
        assert_eq!(s.next_deadline(), Some(at(0)));
        let payload = send_ping(&mut s, at(0));
        assert_eq!(payload.len(), 8);
        assert_eq!(s.next_deadline(), Some(at(300)));
        s.handle(at(12), pong(&payload));
        let got = lines(drain(&mut s, at(12)));
        assert!(
            matches!(
                got.as_slice(),
                [Line::Pong { bytes: 8, seq: 1, rtt, conforming: true }]
                    if *rtt == Duration::from_millis(12)
            ),
            "{got:?}"
        );
        assert_eq!(s.summary().received, 1);
        assert_eq!(s.summary().conforming, 1);
    }

    #[test]
    fn the_next_ping_is_due_an_interval_after_the_last_write() {
        let mut s = session(Some(3));
        let first = send_ping(&mut s, at(0));
        s.handle(at(40), pong(&first));
        drain(&mut s, at(40));
        assert_eq!(s.next_deadline(), Some(at(1_000)));
        assert!(drain(&mut s, at(999)).is_empty());
        let second = send_ping(&mut s, at(1_000));
        assert_ne!(first, second, "payloads are unique");
    }

    #[test]
    fn a_lost_ping_is_reported_at_its_timeout_and_the_next_follows() {
        let mut s = session(Some(2));
        send_ping(&mut s, at(0));
        assert!(drain(&mut s, at(299)).is_empty());
        let got = lines(drain(&mut s, at(300)));
        assert!(
            matches!(got.as_slice(), [Line::NoPong { seq: 1, timeout }]
                if *timeout == Duration::from_millis(300)),
            "{got:?}"
        );
        assert_eq!(s.next_deadline(), Some(at(1_000)));
        send_ping(&mut s, at(1_000));
        assert_eq!(s.summary().sent, 2);
        assert_eq!(s.summary().received, 0);
    }

    #[test]
    fn an_interval_shorter_than_the_rtt_sends_the_next_ping_at_once() {
        let mut s = Session::new(
            Plan {
                interval: Duration::from_millis(10),
                ..plan(Some(2))
            },
            StdRng::seed_from_u64(1),
            at(0),
        );
        let first = send_ping(&mut s, at(0));
        s.handle(at(50), pong(&first));
        assert!(matches!(
            s.poll(at(50)),
            Some(Action::Report(Line::Pong { .. }))
        ));
        send_ping(&mut s, at(50));
    }

    #[test]
    fn queued_actions_come_without_the_work_of_a_passed_deadline() {
        let mut s = session(Some(3));
        let payload = send_ping(&mut s, at(0));
        s.handle(at(1_500), pong(&payload));
        // The next ping is overdue, but the rest of the same read comes first.
        assert!(matches!(
            s.next_action(),
            Some(Action::Report(Line::Pong { .. }))
        ));
        assert!(s.next_action().is_none());
        s.handle(at(1_500), pong(b"stray"));
        assert!(matches!(
            s.next_action(),
            Some(Action::Report(Line::UnsolicitedPong { bytes: 5 }))
        ));
        assert!(matches!(s.poll(at(1_500)), Some(Action::Ping(_))));
    }

    #[test]
    fn a_late_pong_is_recognised_and_does_not_count() {
        let mut s = session(Some(3));
        let first = send_ping(&mut s, at(0));
        drain(&mut s, at(300));
        // While waiting between pings.
        s.handle(at(400), pong(&first));
        let got = lines(drain(&mut s, at(400)));
        assert!(
            matches!(got.as_slice(), [Line::LatePong { seq: 1 }]),
            "{got:?}"
        );
        // And while the next ping waits: that one still waits for its own pong.
        let second = send_ping(&mut s, at(1_000));
        s.handle(at(1_010), pong(&first));
        let got = lines(drain(&mut s, at(1_010)));
        assert!(
            matches!(got.as_slice(), [Line::LatePong { seq: 1 }]),
            "{got:?}"
        );
        s.handle(at(1_020), pong(&second));
        let got = lines(drain(&mut s, at(1_020)));
        assert!(
            matches!(got.as_slice(), [Line::Pong { seq: 2, .. }]),
            "{got:?}"
        );
        assert_eq!(s.summary().received, 1);
    }

    #[test]
    fn an_unsolicited_pong_is_ignored_with_a_line() {
        let mut s = session(Some(3));
        let first = send_ping(&mut s, at(0));
        s.handle(at(5), pong(&first));
        drain(&mut s, at(5));
        s.handle(at(500), pong(b"heartbeat"));
        let got = lines(drain(&mut s, at(500)));
        assert!(
            matches!(got.as_slice(), [Line::UnsolicitedPong { bytes: 9 }]),
            "{got:?}"
        );
        assert_eq!(s.summary().received, 1);
    }

    #[test]
    fn a_broken_answer_counts_as_non_conforming_with_its_warnings() {
        let mut s = session(Some(1));
        let payload = send_ping(&mut s, at(0));
        let mut broken = raw_frame(OpCode::PONG, &payload[..4]);
        broken.header.fin = false;
        s.handle(at(3), Input::Item(Item::Frame(broken)));
        let got = drain(&mut s, at(3));
        assert!(
            matches!(
                got.as_slice(),
                [
                    Action::Report(Line::PongProblem {
                        seq: 1,
                        problem: Problem::NoFin
                    }),
                    Action::Report(Line::PongProblem {
                        seq: 1,
                        problem: Problem::Truncated { got: 4, sent: 8 }
                    }),
                    Action::Report(Line::Pong {
                        bytes: 4,
                        seq: 1,
                        conforming: false,
                        ..
                    }),
                    Action::Close(_),
                ]
            ),
            "{got:?}"
        );
        let summary = s.summary();
        assert_eq!((summary.received, summary.conforming), (1, 0));
        assert!(!summary.perfect());
    }

    #[test]
    fn server_pings_are_answered_and_oversized_ones_are_not() {
        let mut s = session(Some(3));
        send_ping(&mut s, at(0));
        s.handle(at(1), frame(OpCode::PING, b"are you there"));
        assert!(
            matches!(drain(&mut s, at(1)).as_slice(), [Action::Pong(p)] if p == b"are you there")
        );
        let mut huge = raw_frame(OpCode::PING, &[b'x'; 125]);
        huge.header.len = 70_000;
        s.handle(at(2), Input::Item(Item::Frame(huge)));
        let got = lines(drain(&mut s, at(2)));
        assert!(
            matches!(got.as_slice(), [Line::OversizedPing { bytes: 70_000 }]),
            "{got:?}"
        );
        assert_eq!(s.summary().violations, 1);
    }

    #[test]
    fn reserved_opcodes_are_violations_and_data_frames_are_ignored() {
        let mut s = session(Some(3));
        send_ping(&mut s, at(0));
        s.handle(at(1), frame(OpCode::TEXT, b""));
        s.handle(at(1), frame(OpCode::BINARY, b""));
        assert!(drain(&mut s, at(1)).is_empty());
        s.handle(at(2), frame(OpCode::from_bits(0xb), b""));
        let got = lines(drain(&mut s, at(2)));
        assert!(
            matches!(got.as_slice(), [Line::ReservedOpcode(0xb)]),
            "{got:?}"
        );
        assert_eq!(s.summary().violations, 1);
    }

    #[test]
    fn a_server_close_is_reported_and_its_code_echoed() {
        let mut s = session(None);
        send_ping(&mut s, at(0));
        let mut body = 1001u16.to_be_bytes().to_vec();
        body.extend_from_slice(b"going away");
        s.handle(at(5), frame(OpCode::CLOSE, &body));
        let got = drain(&mut s, at(5));
        assert!(
            matches!(
                got.as_slice(),
                [
                    Action::Report(Line::ServerClosed { code: Some(1001), reason }),
                    Action::Close(echo),
                ] if reason == "going away" && echo == &1001u16.to_be_bytes()
            ),
            "{got:?}"
        );
        assert!(s.is_done());
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn an_empty_server_close_is_echoed_empty() {
        let mut s = session(None);
        send_ping(&mut s, at(0));
        s.handle(at(5), frame(OpCode::CLOSE, b""));
        let got = drain(&mut s, at(5));
        assert!(
            matches!(
                got.as_slice(),
                [Action::Report(Line::ServerClosed { code: None, .. }), Action::Close(echo)]
                    if echo.is_empty()
            ),
            "{got:?}"
        );
    }

    #[test]
    fn after_the_last_pong_our_close_is_answered_without_a_line() {
        let mut s = session(Some(1));
        let payload = send_ping(&mut s, at(0));
        s.handle(at(5), pong(&payload));
        assert!(matches!(
            s.poll(at(5)),
            Some(Action::Report(Line::Pong { .. }))
        ));
        send_close(&mut s, at(6));
        assert_eq!(s.next_deadline(), Some(at(1_006)));
        s.handle(at(7), frame(OpCode::CLOSE, &1000u16.to_be_bytes()));
        assert!(drain(&mut s, at(7)).is_empty(), "no line, no second close");
        assert!(s.is_done());
        assert!(s.summary().perfect());
    }

    #[test]
    fn the_goodbye_ends_after_a_second_without_an_answer() {
        let mut s = session(Some(1));
        send_ping(&mut s, at(0));
        let lost = s.poll(at(300));
        assert!(
            matches!(lost, Some(Action::Report(Line::NoPong { .. }))),
            "{lost:?}"
        );
        send_close(&mut s, at(300));
        assert!(drain(&mut s, at(1_299)).is_empty());
        assert!(!s.is_done());
        assert!(drain(&mut s, at(1_300)).is_empty());
        assert!(s.is_done());
    }

    #[test]
    fn ctrl_c_says_goodbye_without_counting_the_ping_lost() {
        let mut s = session(None);
        send_ping(&mut s, at(0));
        s.handle(at(100), Input::Interrupted);
        send_close(&mut s, at(100));
        // The ping's deadline is gone with it: no "no pong" line.
        assert!(drain(&mut s, at(400)).is_empty());
        // A second Ctrl-C changes nothing.
        s.handle(at(500), Input::Interrupted);
        assert!(drain(&mut s, at(500)).is_empty());
        let summary = s.summary();
        assert_eq!((summary.sent, summary.received), (1, 0));
    }

    #[test]
    fn a_malformed_header_ends_the_session_as_a_violation() {
        let mut s = session(None);
        send_ping(&mut s, at(0));
        s.handle(at(1), Input::Item(Item::Malformed));
        let got = lines(drain(&mut s, at(1)));
        assert!(matches!(got.as_slice(), [Line::Malformed]), "{got:?}");
        assert!(s.is_done());
        assert_eq!(s.summary().violations, 1);
        // Nothing is handled after the end, and no Close is sent.
        s.handle(at(2), pong(b"late"));
        assert!(drain(&mut s, at(2)).is_empty());
    }

    #[test]
    fn eof_and_read_failures_end_the_session_without_a_close() {
        let mut s = session(None);
        send_ping(&mut s, at(0));
        s.handle(at(1), Input::Eof);
        assert!(matches!(
            lines(drain(&mut s, at(1))).as_slice(),
            [Line::Eof]
        ));
        assert!(s.is_done());

        let mut s = session(None);
        send_ping(&mut s, at(0));
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        s.handle(at(1), Input::ReadFailed(reset));
        assert!(matches!(
            lines(drain(&mut s, at(1))).as_slice(),
            [Line::ConnectionFailed(_)]
        ));
        assert!(s.is_done());
    }

    #[test]
    fn a_failed_ping_write_is_not_counted_sent() {
        let mut s = session(None);
        assert!(matches!(s.poll(at(0)), Some(Action::Ping(_))));
        let limit = Duration::from_millis(300);
        s.handle(at(300), Input::WriteFailed(WriteFailure::TimedOut(limit)));
        let got = lines(drain(&mut s, at(300)));
        assert!(
            matches!(got.as_slice(), [Line::WriteTimedOut(l)] if *l == limit),
            "{got:?}"
        );
        assert!(s.is_done());
        assert_eq!(s.summary().sent, 0);
        assert!(!s.summary().perfect());
    }

    #[test]
    fn time_going_backwards_counts_as_no_time() {
        let mut s = session(Some(2));
        let payload = send_ping(&mut s, at(100));
        s.handle(at(50), pong(&payload));
        let got = lines(drain(&mut s, at(50)));
        assert!(
            matches!(got.as_slice(), [Line::Pong { rtt, .. }] if *rtt == Duration::ZERO),
            "{got:?}"
        );
    }

    #[test]
    fn statistics_lines_follow_the_counts() {
        let mut s = session(Some(2));
        let first = send_ping(&mut s, at(0));
        s.handle(at(10), pong(&first));
        drain(&mut s, at(10));
        let second = send_ping(&mut s, at(1_000));
        s.handle(at(1_030), pong(&second));
        drain(&mut s, at(1_030));
        let lines = s.summary().lines();
        assert!(
            matches!(
                lines.as_slice(),
                [
                    Line::StatisticsTitle,
                    Line::Totals { sent: 2, received: 2, conforming: 2 },
                    Line::Rtt { min, max, total, count: 2 },
                ] if *min == Duration::from_millis(10)
                    && *max == Duration::from_millis(30)
                    && *total == Duration::from_millis(40)
            ),
            "{lines:?}"
        );
        assert!(
            matches!(
                session(Some(1)).summary().lines().as_slice(),
                [_, Line::Totals { .. }]
            ),
            "no rtt line without a pong"
        );
    }

    #[test]
    fn payloads_are_printable_unique_and_sized() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen = std::collections::HashSet::new();
        for seq in 1..=5000 {
            let p = make_payload(seq, 8, &mut rng);
            assert_eq!(p.len(), 8);
            assert!(p.iter().all(|b| b.is_ascii_alphanumeric()));
            assert!(seen.insert(p));
        }
        assert!(make_payload(1, 0, &mut rng).is_empty());
        assert_eq!(make_payload(u64::MAX, 125, &mut rng).len(), 125);
    }

    /// Does what the session asks for at `now`, every write succeeding; returns the pongs.
    fn perform(s: &mut Session, now: Duration) -> Vec<Vec<u8>> {
        let mut pongs = Vec::new();
        for action in drain(s, now) {
            let written = match action {
                Action::Ping(_) => OpCode::PING,
                Action::Pong(p) => {
                    pongs.push(p);
                    OpCode::PONG
                }
                Action::Close(_) => OpCode::CLOSE,
                Action::Report(_) => continue,
            };
            s.handle(now, Input::Written(written));
        }
        pongs
    }

    /// A server event for the property test (`Input` holds an `io::Error`, so it is not
    /// `Clone` as strategies need).
    #[derive(Debug, Clone)]
    enum Step {
        Frame(Frame),
        Malformed,
        Eof,
        Interrupted,
    }

    impl Step {
        fn input(self) -> Input {
            match self {
                Step::Frame(f) => Input::Item(Item::Frame(f)),
                Step::Malformed => Input::Item(Item::Malformed),
                Step::Eof => Input::Eof,
                Step::Interrupted => Input::Interrupted,
            }
        }
    }

    fn any_step() -> impl Strategy<Value = Step> {
        let opcode = (0u8..16).prop_map(OpCode::from_bits);
        let frame = (
            opcode,
            any::<bool>(),
            0u8..8,
            proptest::collection::vec(any::<u8>(), 0..=MAX_KEPT),
            0u64..200,
        )
            .prop_map(|(opcode, fin, rsv, payload, extra)| {
                Step::Frame(Frame {
                    header: FrameHeader {
                        fin,
                        rsv: rsv << 4,
                        opcode,
                        mask: None,
                        len: payload.len() as u64 + extra,
                    },
                    payload,
                })
            });
        prop_oneof![
            8 => frame,
            1 => Just(Step::Malformed),
            1 => Just(Step::Eof),
            1 => Just(Step::Interrupted),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the server sends and whenever: no panic, a bounded history and action
        /// queue, counts that add up, and an end once the pings are spent.
        #[test]
        fn hostile_input_any_timing(
            steps in proptest::collection::vec((any_step(), 0u64..700), 0..200),
        ) {
            let mut s = session(Some(5));
            let mut now = at(0);
            for (step, gap) in steps {
                now += Duration::from_millis(gap);
                for pong in perform(&mut s, now) {
                    prop_assert!(pong.len() <= MAX_KEPT);
                }
                s.handle(now, step.input());
                prop_assert!(s.history.len() <= HISTORY);
                prop_assert!(s.actions.len() <= 2 + 8);
                let sum = s.summary();
                prop_assert!(sum.conforming <= sum.received && sum.received <= sum.sent);
                prop_assert!(sum.sent <= 5);
            }
            // Left alone, every session ends: deadlines only move forward.
            for _ in 0..32 {
                if s.is_done() {
                    break;
                }
                perform(&mut s, now);
                if let Some(next) = s.next_deadline() {
                    now = now.max(next);
                }
            }
            prop_assert!(s.is_done());
        }
    }
}
