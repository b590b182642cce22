//! The one place that names the synchronisation primitives of the registry, so that the loom
//! models (`--cfg loom`, test builds only) run the same code on loom's instrumented versions (design.md §4.9).

#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicU8, AtomicU64, Ordering},
};

#[cfg(all(test, loom))]
pub(crate) use loom::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicU8, AtomicU64, Ordering},
};

/// `lock` that shrugs off poisoning: the guarded data stays consistent between statements.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A waker slot: `atomic_waker::AtomicWaker`, or loom's model of it.
#[derive(Debug, Default)]
pub(crate) struct AtomicWaker {
    #[cfg(not(all(test, loom)))]
    inner: atomic_waker::AtomicWaker,
    #[cfg(all(test, loom))]
    inner: loom::future::AtomicWaker,
}

impl AtomicWaker {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn register(&self, waker: &core::task::Waker) {
        #[cfg(not(all(test, loom)))]
        self.inner.register(waker);
        #[cfg(all(test, loom))]
        self.inner.register_by_ref(waker);
    }

    pub(crate) fn wake(&self) {
        self.inner.wake();
    }
}
