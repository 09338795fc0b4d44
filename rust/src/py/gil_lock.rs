//! `GilLock`: exclusive access to Rust data from Python threads, with the GIL as the lock.
//!
//! The object store is reached only from Python calls, which hold the GIL. A mutex around it
//! would be a second lock: an uncontended `parking_lot` lock and unlock measured 12-13 ns per
//! call here, taking a PyO3 method from 20 to 34 ns, more than half of what a cache hit may cost.
//! CPython's dict and `functools.lru_cache` rely on the GIL alone, and so does this.
//!
//! The GIL alone is not enough when code under the lock runs Python code: a key's `__eq__` may
//! let the interpreter switch threads, or call back into the same cache. So the data carries a
//! busy state, set for as long as a guard lives:
//! - a caller who finds it set by another thread releases the GIL and waits for it to clear (the
//!   holder needs the GIL to finish, so waiting with the GIL held would deadlock);
//! - a caller who finds it set by its own thread is inside a callback of its own operation, and
//!   gets a `RuntimeError` instead of a deadlock or a table changed under its feet.
//!
//! Nothing here is sound without the GIL: the module declares `gil_used = true`, and abi3
//! builds can't be loaded by free-threaded CPython.
#![allow(unsafe_code)] // see the SAFETY comments

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

const FREE: u8 = 0;
const BUSY: u8 = 1;
/// A panic unwound through a guard: the data may be half changed, so it is never handed out again.
const POISONED: u8 = 2;

pub(crate) struct GilLock<T> {
    state: AtomicU8,
    /// The holder's `PyThreadState`, to tell re-entry from another thread's hold.
    owner: AtomicUsize,
    data: UnsafeCell<T>,
}

// SAFETY: `data` is only reached through a `GilGuard`, which needs the GIL to make and which
// excludes every other guard through its busy state (see the module docs).
unsafe impl<T: Send> Sync for GilLock<T> {}

/// Exclusive access to a `GilLock`'s data while the GIL is held.
pub(crate) struct GilGuard<'a, T> {
    lock: &'a GilLock<T>,
    /// Not `Send`: the guard stays on the thread that holds the GIL.
    _gil: PhantomData<Python<'a>>,
}

/// This thread's interpreter state: unique among live threads, and read without a TLS lookup.
#[inline]
pub(crate) fn this_thread() -> usize {
    // SAFETY: called with the GIL held (every caller has a `Python` token).
    unsafe { pyo3::ffi::PyThreadState_Get() as usize }
}

impl<T> GilLock<T> {
    pub(crate) fn new(data: T) -> Self {
        GilLock {
            state: AtomicU8::new(FREE),
            owner: AtomicUsize::new(0),
            data: UnsafeCell::new(data),
        }
    }

    /// Takes the data for this thread. Errors if this thread already holds it (a callback
    /// re-entered the structure); waits, without the GIL, while another thread holds it.
    #[inline]
    pub(crate) fn lock<'a>(&'a self, py: Python<'a>) -> PyResult<GilGuard<'a, T>> {
        // Relaxed is enough here: with the GIL held, the GIL's own hand-over orders these with
        // every other thread's accesses.
        if self.state.load(Ordering::Relaxed) == FREE {
            return Ok(self.take());
        }
        self.lock_slow(py)
    }

    #[inline]
    fn take(&self) -> GilGuard<'_, T> {
        self.state.store(BUSY, Ordering::Relaxed);
        self.owner.store(this_thread(), Ordering::Relaxed);
        GilGuard {
            lock: self,
            _gil: PhantomData,
        }
    }

    #[cold]
    fn lock_slow<'a>(&'a self, py: Python<'a>) -> PyResult<GilGuard<'a, T>> {
        let me = this_thread();
        loop {
            match self.state.load(Ordering::Acquire) {
                FREE => return Ok(self.take()),
                POISONED => {
                    return Err(PyRuntimeError::new_err(
                        "the cache is unusable: an internal error (a panic) interrupted an \
                         operation on it; create a new one and please report the bug",
                    ))
                }
                _ => {}
            }
            if self.owner.load(Ordering::Relaxed) == me {
                return Err(PyRuntimeError::new_err(
                    "the cache was used from inside one of its own calls (a key's __eq__ called \
                     back into the same cache); this would deadlock, so it is refused",
                ));
            }
            let state = &self.state;
            py.detach(|| {
                let mut spins = 0u32;
                while state.load(Ordering::Acquire) == BUSY {
                    if spins < 64 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                    spins += 1;
                }
            });
        }
    }
}

impl<T: Default> Default for GilLock<T> {
    fn default() -> Self {
        GilLock::new(T::default())
    }
}

impl<T> Drop for GilGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // Release pairs with the Acquire of a thread waiting without the GIL.
        let next = if std::thread::panicking() {
            POISONED
        } else {
            FREE
        };
        self.lock.state.store(next, Ordering::Release);
    }
}

impl<T> Deref for GilGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard is the only one (see `GilLock`).
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for GilGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard is the only one (see `GilLock`).
        unsafe { &mut *self.lock.data.get() }
    }
}
