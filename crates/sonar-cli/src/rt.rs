//! Runtime selection (`--runtime`) and the few runtime-generic helpers the commands share.

use std::future::Future;
use std::time::Duration;

use futures_util::future::{Either, select};
use sonar_async::Runtime;

use crate::Failure;

/// Runs `$body` (an async block using the runtime value `$rt`) to completion on the runtime
/// chosen by `$kind`. The body is written once, generic over [`sonar_async::Runtime`]; only
/// the runtime start-up differs.
macro_rules! block_on_runtime {
    ($kind:expr, |$rt:ident| $body:expr) => {
        match $kind {
            $crate::args::RuntimeKind::Tokio => {
                let $rt = sonar_tokio::Tokio;
                $crate::rt::tokio_runtime()?.block_on($body)
            }
            $crate::args::RuntimeKind::Smol => {
                let $rt = sonar_smol::Smol;
                smol::block_on($body)
            }
            $crate::args::RuntimeKind::AsyncStd => {
                let $rt = sonar_async_std::AsyncStd;
                async_std::task::block_on($body)
            }
        }
    };
}
pub(crate) use block_on_runtime;

/// A multi-threaded tokio runtime with I/O and time enabled.
pub(crate) fn tokio_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("cannot start the tokio runtime: {e}")))
}

/// Sleeps for `d` on `rt`'s clock.
pub(crate) async fn sleep<R: Runtime>(rt: &R, d: Duration) {
    let timer = rt.timer();
    let deadline = timer.now() + d;
    timer.sleep_until(deadline).await;
}

/// Runs `fut` for at most `limit`; `None` if the time ran out first.
pub(crate) async fn timeout<R: Runtime, F: Future>(
    rt: &R,
    limit: Duration,
    fut: F,
) -> Option<F::Output> {
    let fut = std::pin::pin!(fut);
    let sleep = std::pin::pin!(sleep(rt, limit));
    match select(fut, sleep).await {
        Either::Left((v, _)) => Some(v),
        Either::Right(((), _)) => None,
    }
}
