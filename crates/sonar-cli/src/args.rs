//! The command line: subcommands, flags and their help texts.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

const TOP_AFTER_HELP: &str = "\
Exit codes:
  0  success (ping: every ping got a conforming pong)
  1  failure: connection or handshake failed, protocol error, keepalive timeout,
     lost or non-conforming pongs
  2  usage error (bad flags or arguments)

Logging: set RUST_LOG (default `info,sonar_async=warn`), e.g. RUST_LOG=debug sonar serve.
Logs go to stderr, one line per event.

Examples:
  sonar serve
  sonar client ws://127.0.0.1:9001
  sonar ping ws://127.0.0.1:9001 -c 3";

/// sonar: a WebSocket echo server, a stdin/stdout client, and ping(8) for WebSocket.
#[derive(Debug, Parser)]
#[command(name = "sonar", version, about, after_long_help = TOP_AFTER_HELP)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run an echo server: every text and binary message is sent back unchanged.
    #[command(after_long_help = "\
Prints `listening on ADDR` on stdout once it accepts connections. Connections, closes and
keepalive timeouts are logged on stderr (RUST_LOG, default info). Ctrl-C or SIGTERM sends
Close 1001 to every client, waits up to 5 s for them, and exits 0.

Threads: by default one listener and one accept loop, with the connections on --threads
worker threads (one per CPU). With --reuse-port, --threads accept loops, each on its own
thread and listener (SO_REUSEPORT, Linux); the kernel picks a loop per connection, and a
connection stays on its loop's thread (async-std: on its global executor). Another process
of the same user that binds the port with SO_REUSEPORT joins in. Ctrl-C stops every loop;
every client gets 1001.

Examples:
  sonar serve
  sonar serve --addr 127.0.0.1:0 --runtime smol --ping-interval 5 --ping-timeout 2.5
  sonar serve --threads 4
  sonar serve --reuse-port --threads 2")]
    Serve(ServeArgs),
    /// Connect to a server: stdin lines are sent as text messages, received messages printed.
    #[command(after_long_help = "\
Each stdin line is sent as one text message; each received text message is printed on its own
stdout line, a binary one as `<binary N bytes>`. At the end of stdin, the client waits for as
many replies as lines it sent (while they keep coming, 0.5 s at most between two), then sends
Close 1000 and awaits the closing handshake; exit 0. With --echo every received message is sent back unchanged
instead (stdin is ignored) until the server closes.
Failures (handshake rejected, protocol error, keepalive timeout) exit 1 with one line on stderr.

Examples:
  printf 'hello\\nworld\\n' | sonar client ws://127.0.0.1:9001
  sonar client wss://localhost:8443/chat --insecure -H 'Authorization: Bearer t0k3n' --protocol chat
  sonar client 'ws://127.0.0.1:9001/runCase?case=1&agent=sonar' --echo")]
    Client(ClientArgs),
    /// Measure round-trip times with WebSocket Ping frames, like ping(8).
    #[command(after_long_help = "\
Connects, then sends masked Ping frames with a unique payload and waits for each Pong. Prints
one line per pong (`N bytes from HOST: seq=K rtt=X.XXX ms`), a warning for every
non-conforming pong (FIN unset, payload not echoed or truncated, RSV bits set, masked by the
server, unexpected opcode) and a summary. Exit 0 only if every ping got a conforming pong.

Examples:
  sonar ping ws://127.0.0.1:9001 -c 3
  sonar ping wss://example.com/socket -c 10 -i 0.2 -s 32 -W 2")]
    Ping(PingArgs),
}

/// The async runtime that runs the connection tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RuntimeKind {
    /// tokio (multi-threaded)
    Tokio,
    /// async-std
    AsyncStd,
    /// smol
    Smol,
}

/// Keepalive flags shared by `serve` and `client`.
#[derive(Debug, Clone, Args)]
pub(crate) struct Keepalive {
    /// Send a keepalive ping after SECS of inbound silence (0 disables keepalive).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) ping_interval: Option<Duration>,
    /// Declare the peer dead if no pong arrives within SECS of a keepalive ping.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub(crate) ping_timeout: Option<Duration>,
}

/// Compression flags shared by `serve` and `client`.
#[derive(Debug, Clone, Args)]
pub(crate) struct Compression {
    /// Do not negotiate permessage-deflate (RFC 7692); it is offered and accepted by default.
    #[arg(long)]
    pub(crate) no_deflate: bool,
    /// Reset our compressor after every message (less memory per connection, less
    /// compression): a client offers `client_no_context_takeover`, a server answers
    /// `server_no_context_takeover`.
    #[arg(long, conflicts_with = "no_deflate")]
    pub(crate) deflate_no_context_takeover: bool,
}

impl Compression {
    /// Applies the flags to a connection configuration.
    pub(crate) fn apply(&self, config: sonar_async::Config) -> sonar_async::Config {
        if self.no_deflate {
            return config.with_deflate(sonar_async::DeflateConfig::disabled());
        }
        let deflate = config
            .deflate
            .with_no_context_takeover(self.deflate_no_context_takeover);
        config.with_deflate(deflate)
    }
}

impl Keepalive {
    /// Applies the flags to a connection configuration.
    pub(crate) fn apply(&self, mut config: sonar_async::Config) -> sonar_async::Config {
        if let Some(interval) = self.ping_interval {
            let interval = (!interval.is_zero()).then_some(interval);
            config = config.with_ping_interval(interval);
        }
        if let Some(timeout) = self.ping_timeout {
            config = config.with_pong_timeout(Some(timeout));
        }
        config
    }
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the real one is printed).
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub(crate) addr: SocketAddr,
    /// Async runtime.
    #[arg(long, value_enum, default_value = "tokio")]
    pub(crate) runtime: RuntimeKind,
    #[command(flatten)]
    pub(crate) keepalive: Keepalive,
    #[command(flatten)]
    pub(crate) compression: Compression,
    /// Largest message accepted from a client (larger ones are closed with 1009).
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_message_size: Option<usize>,
    /// Threads that run the connections [default: one per CPU]: tokio's worker threads, the
    /// threads that run smol's executor, or the size of async-std's global executor
    /// (ASYNC_STD_THREAD_COUNT, if set, must agree). With --reuse-port: the accept loops.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) threads: Option<u16>,
    /// Run --threads accept loops, each on its own thread with a single-threaded runtime and
    /// its own SO_REUSEPORT listener on the same port; the kernel spreads connections over
    /// them (like nginx's `reuseport`). async-std has no single-threaded runtime: its loops
    /// accept on their own threads, its connections run on its global executor. Linux only.
    #[arg(long)]
    pub(crate) reuse_port: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// ws:// or wss:// URL to connect to.
    pub(crate) url: String,
    /// Async runtime.
    #[arg(long, value_enum, default_value = "tokio")]
    pub(crate) runtime: RuntimeKind,
    #[command(flatten)]
    pub(crate) keepalive: Keepalive,
    #[command(flatten)]
    pub(crate) compression: Compression,
    /// Echo every received message back unchanged (Autobahn client mode); stdin is ignored.
    #[arg(long)]
    pub(crate) echo: bool,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER", value_parser = parse_header)]
    pub(crate) headers: Vec<(String, String)>,
    /// Offer a subprotocol (repeatable, in order of preference).
    #[arg(long = "protocol", value_name = "P")]
    pub(crate) protocols: Vec<String>,
    /// Accept any TLS certificate (self-signed test servers only: this disables authentication).
    #[arg(long)]
    pub(crate) insecure: bool,
    /// Connect again whenever the connection ends or cannot be made (exponential backoff
    /// with jitter, 0.5 s doubling to 30 s); a rejected upgrade (such as 401 or 403) still
    /// ends the client. Stdin lines go to the current connection.
    #[arg(long)]
    pub(crate) reconnect: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PingArgs {
    /// ws:// or wss:// URL to ping.
    pub(crate) url: String,
    /// Stop after COUNT pings (default: until Ctrl-C).
    #[arg(short = 'c', value_name = "COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) count: Option<u64>,
    /// Wait SECS between pings.
    #[arg(short = 'i', value_name = "SECS", default_value = "1", value_parser = parse_secs)]
    pub(crate) interval: Duration,
    /// Payload bytes per ping (0 to 125).
    #[arg(short = 's', value_name = "BYTES", default_value_t = 8,
          value_parser = clap::value_parser!(u8).range(0..=125))]
    pub(crate) size: u8,
    /// Timeout per ping in SECS.
    #[arg(short = 'W', value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub(crate) timeout: Duration,
    /// Accept any TLS certificate (self-signed test servers only).
    #[arg(long)]
    pub(crate) insecure: bool,
}

/// Parses seconds with an optional fraction (`2`, `0.25`), at most a day.
pub(crate) fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{s}` is not a non-negative number of seconds"));
    }
    if v > 86_400.0 {
        return Err(format!("`{s}` seconds is more than a day"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Parses `Name: value`.
pub(crate) fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not `Name: value`"))?;
    let name = name.trim();
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(format!("`{name}` is not a valid header name"));
    }
    let value = value.trim();
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err("header values cannot contain CR, LF or NUL".to_owned());
    }
    Ok((name.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds_accept_fractions_and_reject_garbage() {
        assert_eq!(parse_secs("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_secs("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_secs("0"), Ok(Duration::ZERO));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("NaN").is_err());
        assert!(parse_secs("inf").is_err());
        assert!(parse_secs("1e30").is_err());
        assert!(parse_secs("abc").is_err());
    }

    #[test]
    fn headers_parse_name_and_value() {
        assert_eq!(
            parse_header("Authorization: Bearer x:y"),
            Ok(("Authorization".into(), "Bearer x:y".into()))
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": empty name").is_err());
        assert!(parse_header("Bad Name: v").is_err());
    }

    #[test]
    fn zero_interval_disables_keepalive() {
        let k = Keepalive {
            ping_interval: Some(Duration::ZERO),
            ping_timeout: Some(Duration::from_millis(200)),
        };
        let c = k.apply(sonar_async::Config::default());
        assert_eq!(c.keepalive.ping_interval, None);
        assert_eq!(c.keepalive.pong_timeout, Some(Duration::from_millis(200)));
    }
}
