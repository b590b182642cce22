//! Connecting again after a connection-level failure: exponential backoff with jitter, a cap
//! and a maximum number of tries ([`RetryPolicy`]); [`connect_retrying`] for one connection and
//! [`Reconnect`] for a client that stays connected, as Python `websockets`' `async for ws in
//! connect(uri)` does.
//!
//! Only failures that another try may cure are retried ([`Error::is_transient`]): the server
//! could not be reached, the handshake timed out or the connection dropped during it, or the
//! server answered 500, 502, 503 or 504. A rejection such as 401 or 403, a bad URL, a TLS
//! certificate the client refuses or a protocol violation ends the attempts at once.

use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use sonar_handshake::{Accepted, ClientError, ClientRequest};

use crate::{Config, Error, Runtime, WebSocket};

/// When to try connecting again, and after which failures ([`Error::is_transient`]: never
/// after a rejection such as 401 or 403).
///
/// The n-th retry waits `initial_delay * factor^(n-1)`, at most `max_delay`; with jitter (the
/// default) a random time between half of that and all of it, so that many clients cut off
/// together do not come back together.
///
/// ```
/// use std::time::Duration;
/// use sonar_async::RetryPolicy;
///
/// let policy = RetryPolicy::new()
///     .with_initial_delay(Duration::from_millis(200))
///     .with_max_delay(Duration::from_secs(10))
///     .with_max_tries(5)
///     .with_jitter(false);
/// assert_eq!(policy.delay(1), Duration::from_millis(200));
/// assert_eq!(policy.delay(3), Duration::from_millis(800));
/// assert_eq!(policy.delay(30), Duration::from_secs(10));
/// assert!(policy.allows(5) && !policy.allows(6));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    initial_delay: Duration,
    max_delay: Duration,
    factor: u32,
    max_tries: Option<u32>,
    jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryPolicy {
    /// 500 ms, doubling up to 30 s, with jitter, trying for ever.
    pub fn new() -> Self {
        RetryPolicy {
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            factor: 2,
            max_tries: None,
            jitter: true,
        }
    }

    /// The wait before the first retry.
    pub fn with_initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// The longest wait between two tries.
    pub fn with_max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// How much longer each wait is than the one before (at least 1).
    pub fn with_factor(mut self, factor: u32) -> Self {
        self.factor = factor.max(1);
        self
    }

    /// Gives up after `tries` tries in all (the first one included; at least 1).
    pub fn with_max_tries(mut self, tries: u32) -> Self {
        self.max_tries = Some(tries.max(1));
        self
    }

    /// Whether each wait is randomised (between half of it and all of it).
    pub fn with_jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Whether try number `try_number` (1 is the first) may be made.
    pub fn allows(&self, try_number: u32) -> bool {
        self.max_tries.is_none_or(|max| try_number <= max)
    }

    /// The wait before retry number `retry` (1 is the first retry), before jitter.
    pub fn delay(&self, retry: u32) -> Duration {
        let mut delay = self.initial_delay;
        for _ in 1..retry {
            if delay >= self.max_delay {
                break;
            }
            delay = delay.saturating_mul(self.factor);
        }
        delay.min(self.max_delay)
    }

    fn wait(&self, retry: u32, rng: &mut StdRng) -> Duration {
        let delay = self.delay(retry);
        if self.jitter && !delay.is_zero() {
            rng.random_range(delay / 2..=delay)
        } else {
            delay
        }
    }
}

impl Error {
    /// Whether another try may cure this failure to connect: the server could not be reached
    /// or the connection failed during the handshake (I/O error, timeout, end of stream), or
    /// it answered 500, 502, 503 or 504. Not a rejection such as 401 or 403, a bad URL or
    /// request, a TLS certificate the client refuses, or a protocol violation.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Io(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
            ),
            Error::HandshakeTimeout | Error::HandshakeEof | Error::ConnectionClosed => true,
            Error::Handshake(ClientError::Rejected { status, .. }) => {
                matches!(status, 500 | 502 | 503 | 504)
            }
            _ => false,
        }
    }
}

/// Connects as [`connect`](crate::connect) does, trying again after transient failures as
/// `policy` allows; the error is the last try's.
pub async fn connect_retrying<R: Runtime>(
    rt: &R,
    request: ClientRequest,
    config: Config,
    policy: &RetryPolicy,
) -> Result<(WebSocket, Accepted), Error> {
    let mut rng = StdRng::from_os_rng();
    let mut try_number = 1;
    loop {
        match crate::connect(rt, request.clone(), config.clone()).await {
            Ok(connected) => return Ok(connected),
            Err(e) if e.is_transient() && policy.allows(try_number + 1) => {
                let wait = policy.wait(try_number, &mut rng);
                tracing::info!(error = %e, try_number, ?wait, "connect failed; trying again");
                let timer = rt.timer();
                timer.sleep_until(timer.now() + wait).await;
                try_number += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A client that connects again whenever its connection has ended: each
/// [`next`](Reconnect::next) connects (retrying as the policy allows) and gives the new
/// connection, for the application to use until it ends.
///
/// ```no_run
/// # async fn demo<R: sonar_async::Runtime>(rt: R) {
/// use sonar_async::{ClientRequest, Config, Reconnect, RetryPolicy};
///
/// let request = ClientRequest::from_url("ws://127.0.0.1:9001/feed").unwrap();
/// let mut client = Reconnect::new(rt, request, Config::default(), RetryPolicy::new());
/// while let Some(connected) = client.next().await {
///     let Ok((mut ws, _)) = connected else { break }; // not transient, or out of tries
///     while let Some(Ok(message)) = ws.recv().await {
///         println!("{message:?}");
///     }
///     // The connection ended: the loop connects again.
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Reconnect<R: Runtime> {
    rt: R,
    request: ClientRequest,
    config: Config,
    policy: RetryPolicy,
    ended: bool,
}

impl<R: Runtime> Reconnect<R> {
    /// A client of `request` on runtime `rt`.
    pub fn new(rt: R, request: ClientRequest, config: Config, policy: RetryPolicy) -> Self {
        Reconnect {
            rt,
            request,
            config,
            policy,
            ended: false,
        }
    }

    /// The next connection; `None` after an error has been returned (a failure that is not
    /// transient, or the policy's last try).
    pub async fn next(&mut self) -> Option<Result<(WebSocket, Accepted), Error>> {
        if self.ended {
            return None;
        }
        let result = connect_retrying(
            &self.rt,
            self.request.clone(),
            self.config.clone(),
            &self.policy,
        )
        .await;
        self.ended = result.is_err();
        Some(result)
    }
}
