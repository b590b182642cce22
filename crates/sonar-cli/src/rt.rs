//! Runtime selection (`--runtime`), how many threads run it (`serve --threads`,
//! `--reuse-port`), and the few runtime-generic helpers the commands share.

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::{Either, select};
use sonar_async::Runtime;
use sonar_smol::SmolExecutor;

use crate::Failure;
use crate::args::RuntimeKind;

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

/// Runs `$body` (an async block using the runtime value `$rt`) on this thread, with the
/// tasks it spawns on [`Threads`] `$threads` worker threads of the runtime `$kind`: tokio's
/// multi-threaded runtime, an smol executor run by that many threads, async-std's global
/// executor sized to it. The body itself (the accept loop) runs on this thread.
macro_rules! block_on_pool {
    ($kind:expr, $threads:expr, |$rt:ident| $body:expr) => {
        match $kind {
            $crate::args::RuntimeKind::Tokio => {
                let $rt = sonar_tokio::Tokio;
                $crate::rt::tokio_pool($threads)?.block_on($body)
            }
            $crate::args::RuntimeKind::Smol => $crate::rt::smol_pool($threads, |$rt| $body)?,
            $crate::args::RuntimeKind::AsyncStd => {
                $crate::rt::size_async_std($threads);
                let $rt = sonar_async_std::AsyncStd;
                async_std::task::block_on($body)
            }
        }
    };
}
pub(crate) use block_on_pool;

/// Runs `$body` on this thread with a runtime that only this thread runs, tasks included:
/// tokio's current-thread runtime, an smol executor run by this thread alone. async-std has
/// no such runtime: its tasks go to its global executor (size it with [`size_async_std`]
/// first); only `$body` runs on this thread.
macro_rules! block_on_single {
    ($kind:expr, |$rt:ident| $body:expr) => {
        match $kind {
            $crate::args::RuntimeKind::Tokio => {
                let $rt = sonar_tokio::Tokio;
                $crate::rt::tokio_single()?.block_on($body)
            }
            $crate::args::RuntimeKind::Smol => {
                let executor = ::std::sync::Arc::new(smol::Executor::new());
                let $rt = sonar_smol::SmolExecutor::new(::std::sync::Arc::clone(&executor));
                smol::block_on(executor.run($body))
            }
            $crate::args::RuntimeKind::AsyncStd => {
                let $rt = sonar_async_std::AsyncStd;
                async_std::task::block_on($body)
            }
        }
    };
}
pub(crate) use block_on_single;

/// async-std's own variable for the size of its global executor.
const ASYNC_STD_THREAD_COUNT: &str = "ASYNC_STD_THREAD_COUNT";

/// How many threads run the connections: `--threads N`, or one per CPU.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Threads {
    count: usize,
}

impl Threads {
    /// `--threads` if given, else `std::thread::available_parallelism` (1 if unknown). For
    /// async-std, `ASYNC_STD_THREAD_COUNT` (async-std's own variable) stands in for a missing
    /// `--threads`, and must agree with a given one.
    pub(crate) fn resolve(flag: Option<u16>, kind: RuntimeKind) -> Result<Threads, Failure> {
        let from_env = match kind {
            // Read as async-global-executor reads it, which sees it too.
            RuntimeKind::AsyncStd => std::env::var(ASYNC_STD_THREAD_COUNT)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .map(|n| n.max(1)),
            RuntimeKind::Tokio | RuntimeKind::Smol => None,
        };
        let count = match (flag, from_env) {
            (Some(n), Some(env)) if usize::from(n) != env => {
                return Err(Failure::usage(format!(
                    "{ASYNC_STD_THREAD_COUNT}={env} and --threads {n} disagree; drop one"
                )));
            }
            (Some(n), _) => usize::from(n).max(1),
            (None, Some(env)) => env,
            (None, None) => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        };
        Ok(Threads { count })
    }

    /// The number of threads.
    pub(crate) fn count(self) -> usize {
        self.count
    }
}

/// Names a pool's threads `sonar-worker-1`, `sonar-worker-2`, ... (15 bytes at most up to
/// 999, the length Linux keeps of a thread name).
fn worker_name() -> impl Fn() -> String + Send + Sync + 'static {
    let next = Arc::new(AtomicUsize::new(1));
    move || format!("sonar-worker-{}", next.fetch_add(1, Ordering::Relaxed))
}

/// A multi-threaded tokio runtime with I/O and time enabled.
pub(crate) fn tokio_runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("cannot start the tokio runtime: {e}")))
}

/// A multi-threaded tokio runtime with `threads` worker threads.
pub(crate) fn tokio_pool(threads: Threads) -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.count)
        .thread_name_fn(worker_name())
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("cannot start the tokio runtime: {e}")))
}

/// A current-thread tokio runtime: everything runs on the thread that blocks on it.
pub(crate) fn tokio_single() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("cannot start the tokio runtime: {e}")))
}

/// Runs `body` on this thread with its tasks on an smol executor that `threads` threads run
/// (smol's global executor would run them on `SMOL_THREADS` threads, one by default). The
/// threads stop when `body` is done; tasks still on the executor then are dropped.
pub(crate) fn smol_pool<F: Future>(
    threads: Threads,
    body: impl FnOnce(SmolExecutor) -> F,
) -> Result<F::Output, Failure> {
    let executor = Arc::new(smol::Executor::new());
    // Dropping `stop` ends every worker's `run`.
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    let name = worker_name();
    let mut workers = Vec::with_capacity(threads.count);
    for _ in 0..threads.count {
        let (executor, stopped) = (Arc::clone(&executor), stopped.clone());
        let worker = std::thread::Builder::new()
            .name(name())
            .spawn(move || smol::block_on(executor.run(stopped.recv())))
            .map_err(|e| Failure::new(format!("cannot start an smol executor thread: {e}")))?;
        workers.push(worker);
    }
    let out = smol::block_on(body(SmolExecutor::new(executor)));
    drop(stop);
    for worker in workers {
        let _ = worker.join();
    }
    Ok(out)
}

/// Sizes async-std's global executor to `threads` before async-std starts it (its first use
/// does, reading `ASYNC_STD_THREAD_COUNT`): async-std runs on `async-global-executor`, whose
/// first configuration wins, so no environment variable has to be set. Calls after the first
/// change nothing.
pub(crate) fn size_async_std(threads: Threads) {
    async_global_executor::init_with_config(
        async_global_executor::GlobalExecutorConfig::default()
            .with_env_var(ASYNC_STD_THREAD_COUNT)
            .with_min_threads(threads.count)
            .with_max_threads(threads.count)
            .with_thread_name_fn(worker_name()),
    );
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
