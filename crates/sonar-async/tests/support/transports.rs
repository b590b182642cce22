//! Scripted transports: one that counts its polls, one that trickles.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};

use sonar_async::{Config, Error, WebSocket};
use tokio::io::{DuplexStream, ReadBuf};
use tokio::task::JoinHandle;

/// A transport that counts how often the connection polls it, and fails once a cap is
/// passed (a spinning connection then ends instead of hanging the virtual clock).
pub struct Counted {
    inner: DuplexStream,
    polls: Arc<AtomicUsize>,
    cap: usize,
}

impl Counted {
    fn tick(&self) -> std::io::Result<()> {
        let n = self.polls.fetch_add(1, Relaxed);
        if n >= self.cap {
            return Err(std::io::Error::other("polled too often: busy loop"));
        }
        Ok(())
    }
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.tick()?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.tick()?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.tick()?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A raw client (see [`super::raw_client`]) whose transport polls are counted (cap: `cap`);
/// read the count with [`polls`].
pub async fn counted_client(
    cfg: Config,
    capacity: usize,
    cap: usize,
) -> (
    WebSocket,
    DuplexStream,
    JoinHandle<Result<(), Error>>,
    Arc<AtomicUsize>,
) {
    let polls = Arc::new(AtomicUsize::new(0));
    let p = polls.clone();
    let (ws, peer, keeper) = super::raw_client_with(cfg, capacity, move |inner| Counted {
        inner,
        polls: p,
        cap,
    })
    .await;
    (ws, peer, keeper, polls)
}

/// The polls a [`counted_client`]'s transport has seen.
pub fn polls(p: &AtomicUsize) -> usize {
    p.load(Relaxed)
}

/// A transport that moves at most one byte per call and answers `Pending` every other call
/// (waking itself at once): the worst a socket can legally do.
pub struct Trickle<T> {
    inner: T,
    read_turn: bool,
    write_turn: bool,
}

impl<T> Trickle<T> {
    pub fn new(inner: T) -> Self {
        Trickle {
            inner,
            read_turn: false,
            write_turn: false,
        }
    }
}

impl<T: futures_io::AsyncRead + Unpin> futures_io::AsyncRead for Trickle<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        self.read_turn = !self.read_turn;
        if !self.read_turn {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = buf.len().min(1);
        Pin::new(&mut self.inner).poll_read(cx, &mut buf[..n])
    }
}

impl<T: futures_io::AsyncWrite + Unpin> futures_io::AsyncWrite for Trickle<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_turn = !self.write_turn;
        if !self.write_turn {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let n = buf.len().min(1);
        Pin::new(&mut self.inner).poll_write(cx, &buf[..n])
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
