//! Locking that ignores poisoning.
//!
//! Every critical section of the engine leaves the data it guards
//! consistent before anything that can panic, so a lock poisoned by a
//! panicking thread still guards consistent data.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning (see the module docs).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
