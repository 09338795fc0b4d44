//! Single flight: while one thread computes the value of a missing key, the other threads that
//! ask for the same key wait for its result instead of computing it again.
//!
//! The first caller leads: it registers a flight under the key, computes, stores the value, and
//! hands the result (or the exception) to every follower. Followers wait with the GIL released.
//! A thread that asks again for the key it is computing (a recursive function) is not made to
//! wait for itself: it computes on its own, as `functools.lru_cache` would.
//!
//! asyncio tasks share one thread, so they can't wait here; `ratmemcache.decorators` gives
//! coroutines the same guarantee with futures.

use std::sync::Arc;

use hashbrown::HashTable;
use parking_lot::{Condvar, Mutex};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use super::gil_lock::{this_thread, GilLock};
use super::objects::same_key;
use crate::cache::objects::find_entry_or_err;

/// One computation in progress.
pub(crate) struct Flight {
    leader: usize,
    result: Mutex<Option<PyResult<Py<PyAny>>>>,
    done: Condvar,
}

impl Flight {
    /// Waits (without the GIL) for the leader's result, and returns it or raises its exception.
    pub(crate) fn wait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        py.detach(|| {
            let mut r = self.result.lock();
            while r.is_none() {
                self.done.wait(&mut r);
            }
        });
        match self.result.lock().as_ref().expect("finished") {
            Ok(v) => Ok(v.clone_ref(py).into_bound(py)),
            Err(e) => Err(e.clone_ref(py)),
        }
    }
}

struct Registered {
    hash: u64,
    key: Py<PyAny>,
    flight: Arc<Flight>,
}

/// The flights in progress, by key.
#[derive(Default)]
pub(crate) struct Flights {
    table: GilLock<HashTable<Registered>>,
}

/// What a caller of a missing key does.
pub(crate) enum Role<'a> {
    /// Compute, then [`Lead::finish`].
    Lead(Lead<'a>),
    /// Wait for another thread's result.
    Follow(Arc<Flight>),
    /// This thread is already computing this key: compute again, without a flight.
    Recursive,
}

impl Flights {
    pub(crate) fn join<'a>(&'a self, key: &Bound<'_, PyAny>, hash: u64) -> PyResult<Role<'a>> {
        let py = key.py();
        let me = this_thread();
        let mut table = self.table.lock(py)?;
        let mut eq = same_key(key);
        let found = find_entry_or_err(&mut table, hash, |r| {
            if r.hash == hash {
                eq(&r.key)
            } else {
                Ok(false)
            }
        })?;
        if let Some(entry) = found {
            let flight = &entry.get().flight;
            return Ok(if flight.leader == me {
                Role::Recursive
            } else {
                Role::Follow(flight.clone())
            });
        }
        let flight = Arc::new(Flight {
            leader: me,
            result: Mutex::new(None),
            done: Condvar::new(),
        });
        table.insert_unique(
            hash,
            Registered {
                hash,
                key: key.clone().unbind(),
                flight: flight.clone(),
            },
            |r| r.hash,
        );
        Ok(Role::Lead(Lead {
            flights: self,
            hash,
            flight: Some(flight),
        }))
    }
}

/// The leader's duty: finish the flight, whatever happens. Dropped unfinished (a panic), it
/// wakes the followers with a `RuntimeError`.
pub(crate) struct Lead<'a> {
    flights: &'a Flights,
    hash: u64,
    flight: Option<Arc<Flight>>,
}

impl Lead<'_> {
    /// Unregisters the flight and hands `result` to the followers.
    pub(crate) fn finish(mut self, py: Python<'_>, result: &PyResult<Bound<'_, PyAny>>) {
        let shared = match result {
            Ok(v) => Ok(v.clone().unbind()),
            Err(e) => Err(e.clone_ref(py)),
        };
        self.end(py, shared);
    }

    fn end(&mut self, py: Python<'_>, result: PyResult<Py<PyAny>>) {
        let Some(flight) = self.flight.take() else {
            return;
        };
        let removed = match self.flights.table.lock(py) {
            Ok(mut table) => table
                .find_entry(self.hash, |r| Arc::ptr_eq(&r.flight, &flight))
                .ok()
                .map(|e| e.remove().0),
            // Only a poisoned table gets here; its flight is lost with it.
            Err(_) => None,
        };
        // The key is dropped after the table is released: its __del__ may call back.
        drop(removed);
        *flight.result.lock() = Some(result);
        flight.done.notify_all();
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if self.flight.is_some() {
            Python::attach(|py| {
                self.end(
                    py,
                    Err(PyRuntimeError::new_err(
                        "the call computing this value was interrupted",
                    )),
                )
            });
        }
    }
}

/// `ratmemcache._core.SingleFlight`: the same guarantee for Python code (`@cached` on a bytes
/// `Cache`): `run(key, factory)` calls `factory()` once for concurrent callers of one key.
#[pyclass(module = "ratmemcache._core", name = "SingleFlight", frozen)]
#[derive(Default)]
pub(crate) struct PySingleFlight {
    flights: Flights,
}

#[pymethods]
impl PySingleFlight {
    #[new]
    fn new() -> Self {
        PySingleFlight::default()
    }

    /// `factory()`, or the result (or exception) of the call already running for `key`.
    fn run<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        factory: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = key.py();
        match self.flights.join(key, super::objects::hash_of(key)?)? {
            Role::Follow(flight) => flight.wait(py),
            Role::Recursive => factory.call0(),
            Role::Lead(lead) => {
                let result = factory.call0();
                lead.finish(py, &result);
                result
            }
        }
    }
}
