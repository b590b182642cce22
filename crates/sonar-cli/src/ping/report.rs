//! Every line `sonar ping` prints, from one enum: the session and the driver say *what*
//! happened as a [`Line`], and only [`Line::render`] knows how it reads. Lines go to stdout
//! one at a time, flushed, because ping output is read live.

use std::fmt;
use std::io::{self, Write};
use std::time::Duration;

use super::frames::Problem;

/// What the lines are about: the URL as given, and the host and port it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// One line of output.
#[derive(Debug)]
pub(crate) enum Line {
    /// The first line: `PING url (host:port): N bytes of payload`.
    Start { size: u8 },
    /// A pong answered ping `seq` after `rtt`; `bytes` is the pong's declared length.
    Pong {
        bytes: u64,
        seq: u64,
        rtt: Duration,
        conforming: bool,
    },
    /// What is wrong with the pong of ping `seq`.
    PongProblem { seq: u64, problem: Problem },
    /// Ping `seq` got no pong within `timeout`.
    NoPong { seq: u64, timeout: Duration },
    /// A pong for ping `seq`, which was already counted lost.
    LatePong { seq: u64 },
    /// A pong for no ping of ours (a heartbeat), of `bytes` bytes.
    UnsolicitedPong { bytes: u64 },
    /// The server pinged with more than a control frame may carry; not answered.
    OversizedPing { bytes: u64 },
    /// A frame with a reserved opcode.
    ReservedOpcode(u8),
    /// A frame header that cannot be parsed: the connection is given up.
    Malformed,
    /// The server's Close frame (its code and reason, if it sent any).
    ServerClosed { code: Option<u16>, reason: String },
    /// The stream ended without a Close frame.
    Eof,
    /// Reading or writing failed.
    ConnectionFailed(io::Error),
    /// A write did not complete within the per-ping timeout.
    WriteTimedOut(Duration),
    /// The statistics header.
    StatisticsTitle,
    /// The counts of the statistics.
    Totals {
        sent: u64,
        received: u64,
        conforming: u64,
    },
    /// Round-trip times of the `count` pongs received (`total` is their sum).
    Rtt {
        min: Duration,
        max: Duration,
        total: Duration,
        count: u64,
    },
}

/// Milliseconds with three decimals.
struct Ms(Duration);

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}", self.0.as_secs_f64() * 1000.0)
    }
}

/// Seconds with three decimals.
struct Secs(Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3}", self.0.as_secs_f64())
    }
}

impl Line {
    /// The line as printed (without its newline).
    pub(crate) fn render(&self, target: &Target) -> String {
        let Target { url, host, port } = target;
        match self {
            Line::Start { size } => format!("PING {url} ({host}:{port}): {size} bytes of payload"),
            Line::Pong {
                bytes,
                seq,
                rtt,
                conforming,
            } => {
                let flag = if *conforming { "" } else { " (non-conforming)" };
                format!(
                    "{bytes} bytes from {host}: seq={seq} rtt={} ms{flag}",
                    Ms(*rtt)
                )
            }
            Line::PongProblem { seq, problem } => format!("warning: seq={seq}: {problem}"),
            Line::NoPong { seq, timeout } => {
                format!("no pong for seq={seq} within {} s", Secs(*timeout))
            }
            Line::LatePong { seq } => format!("late pong for seq={seq} (already counted lost)"),
            Line::UnsolicitedPong { bytes } => format!("unsolicited pong ({bytes} bytes) ignored"),
            Line::OversizedPing { bytes } => format!(
                "warning: ping of {bytes} bytes from the server (control frames carry at most \
                 125); not answered"
            ),
            Line::ReservedOpcode(op) => {
                format!("warning: frame with reserved opcode 0x{op:x} from the server")
            }
            Line::Malformed => "warning: malformed frame header from the server (64-bit length \
                                with its top bit set); giving up on the connection"
                .to_owned(),
            Line::ServerClosed {
                code: Some(code),
                reason,
            } => format!("server closed the connection: {code} {reason}"),
            Line::ServerClosed { code: None, .. } => "server closed the connection".to_owned(),
            Line::Eof => "connection closed by the server (no close frame)".to_owned(),
            Line::ConnectionFailed(e) => format!("connection failed: {e}"),
            Line::WriteTimedOut(limit) => format!(
                "server stopped reading: write timed out after {} s",
                Secs(*limit)
            ),
            Line::StatisticsTitle => format!("--- {url} websocket ping statistics ---"),
            Line::Totals {
                sent,
                received,
                conforming,
            } => {
                let lost = sent.saturating_sub(*received);
                let loss = if *sent == 0 {
                    0.0
                } else {
                    lost as f64 * 100.0 / *sent as f64
                };
                let broken = received.saturating_sub(*conforming);
                let extra = if broken > 0 {
                    format!(", {broken} non-conforming")
                } else {
                    String::new()
                };
                format!(
                    "{sent} pings sent, {received} pongs received, {}% loss{extra}",
                    format_percent(loss)
                )
            }
            Line::Rtt {
                min,
                max,
                total,
                count,
            } => {
                let avg = total.as_secs_f64() / (*count).max(1) as f64;
                format!(
                    "rtt min/avg/max = {}/{:.3}/{} ms",
                    Ms(*min),
                    avg * 1000.0,
                    Ms(*max)
                )
            }
        }
    }
}

/// `0`, `100`, or one decimal (`33.3`).
fn format_percent(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("{p:.0}")
    } else {
        format!("{p:.1}")
    }
}

/// Writes lines as they happen.
pub(crate) struct Report<W: Write> {
    target: Target,
    out: W,
}

impl Report<io::Stdout> {
    /// Lines to stdout.
    pub(crate) fn stdout(target: Target) -> Self {
        Report {
            target,
            out: io::stdout(),
        }
    }
}

impl<W: Write> Report<W> {
    /// Writes one line now. A closed stdout is not worth failing the ping for.
    pub(crate) fn line(&mut self, line: &Line) {
        let mut text = line.render(&self.target);
        text.push('\n');
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn target() -> Target {
        Target {
            url: "ws://example.test:9001/echo".to_owned(),
            host: "example.test".to_owned(),
            port: 9001,
        }
    }

    fn render(line: Line) -> String {
        line.render(&target())
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn the_first_line_names_url_host_port_and_size() {
        assert_eq!(
            render(Line::Start { size: 8 }),
            "PING ws://example.test:9001/echo (example.test:9001): 8 bytes of payload"
        );
    }

    #[test]
    fn a_pong_line_reads_like_ping() {
        let pong = |conforming| Line::Pong {
            bytes: 8,
            seq: 3,
            rtt: us(1_234),
            conforming,
        };
        assert_eq!(
            render(pong(true)),
            "8 bytes from example.test: seq=3 rtt=1.234 ms"
        );
        assert_eq!(
            render(pong(false)),
            "8 bytes from example.test: seq=3 rtt=1.234 ms (non-conforming)"
        );
    }

    #[test]
    fn warnings_name_the_seq_and_the_problem() {
        assert_eq!(
            render(Line::PongProblem {
                seq: 2,
                problem: Problem::NoFin
            }),
            "warning: seq=2: pong without FIN (control frames cannot be fragmented)"
        );
        assert_eq!(
            render(Line::OversizedPing { bytes: 200 }),
            "warning: ping of 200 bytes from the server (control frames carry at most 125); \
             not answered"
        );
        assert_eq!(
            render(Line::ReservedOpcode(0xb)),
            "warning: frame with reserved opcode 0xb from the server"
        );
        assert_eq!(
            render(Line::Malformed),
            "warning: malformed frame header from the server (64-bit length with its top bit \
             set); giving up on the connection"
        );
    }

    #[test]
    fn lost_late_and_unsolicited_pongs() {
        assert_eq!(
            render(Line::NoPong {
                seq: 1,
                timeout: Duration::from_millis(300)
            }),
            "no pong for seq=1 within 0.300 s"
        );
        assert_eq!(
            render(Line::LatePong { seq: 4 }),
            "late pong for seq=4 (already counted lost)"
        );
        assert_eq!(
            render(Line::UnsolicitedPong { bytes: 0 }),
            "unsolicited pong (0 bytes) ignored"
        );
    }

    #[test]
    fn how_the_connection_ended() {
        assert_eq!(
            render(Line::ServerClosed {
                code: Some(1001),
                reason: "bye".to_owned()
            }),
            "server closed the connection: 1001 bye"
        );
        assert_eq!(
            render(Line::ServerClosed {
                code: None,
                reason: String::new()
            }),
            "server closed the connection"
        );
        assert_eq!(
            render(Line::Eof),
            "connection closed by the server (no close frame)"
        );
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset by peer");
        assert_eq!(
            render(Line::ConnectionFailed(reset)),
            "connection failed: reset by peer"
        );
        assert_eq!(
            render(Line::WriteTimedOut(Duration::from_secs(2))),
            "server stopped reading: write timed out after 2.000 s"
        );
    }

    #[test]
    fn statistics_read_like_ping() {
        assert_eq!(
            render(Line::StatisticsTitle),
            "--- ws://example.test:9001/echo websocket ping statistics ---"
        );
        let totals = |sent, received, conforming| {
            render(Line::Totals {
                sent,
                received,
                conforming,
            })
        };
        assert_eq!(totals(3, 3, 3), "3 pings sent, 3 pongs received, 0% loss");
        assert_eq!(
            totals(2, 2, 0),
            "2 pings sent, 2 pongs received, 0% loss, 2 non-conforming"
        );
        assert_eq!(
            totals(3, 2, 2),
            "3 pings sent, 2 pongs received, 33.3% loss"
        );
        assert_eq!(totals(0, 0, 0), "0 pings sent, 0 pongs received, 0% loss");
        assert_eq!(
            render(Line::Rtt {
                min: us(500),
                max: us(1_500),
                total: us(3_000),
                count: 3,
            }),
            "rtt min/avg/max = 0.500/1.000/1.500 ms"
        );
    }

    #[test]
    fn percentages_read_like_ping() {
        assert_eq!(format_percent(0.0), "0");
        assert_eq!(format_percent(100.0), "100");
        assert_eq!(format_percent(100.0 / 3.0), "33.3");
    }

    #[test]
    fn a_report_writes_one_flushed_line_each() {
        let mut report = Report {
            target: target(),
            out: Vec::new(),
        };
        report.line(&Line::LatePong { seq: 1 });
        report.line(&Line::StatisticsTitle);
        assert_eq!(
            String::from_utf8(report.out).unwrap(),
            "late pong for seq=1 (already counted lost)\n\
             --- ws://example.test:9001/echo websocket ping statistics ---\n"
        );
    }
}
