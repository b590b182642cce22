//! The one place that names the synchronisation primitives of the connection's [`Hub`]
//! (`crate::conn::hub`), so that its loom models (`--cfg loom`, test builds only; run by
//! `cargo xtask loom`) run the same code on loom's instrumented versions.
//!
//! [`Hub`]: crate::conn

#[cfg(not(all(test, loom)))]
pub(crate) use std::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicBool, Ordering},
};

#[cfg(all(test, loom))]
pub(crate) use loom::sync::{
    Mutex, MutexGuard,
    atomic::{AtomicBool, Ordering},
};

/// `lock` with one policy for a poisoned lock: the guarded data stays consistent between
/// statements (every field is updated before anything that can panic), so a panic elsewhere
/// while it was held does not make it unusable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}
