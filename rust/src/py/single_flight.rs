//! Single flight: while one thread computes the value of a missing key, the other threads that
//! ask for the same key wait for its result instead of computing it again.
//!
//! The first caller leads: it registers the key, computes, stores the value, and hands the result
//! (or the exception) to every follower. Followers wait with the GIL released. The place they
//! wait on (a mutex and a condition variable) is made by the first follower, so a miss that no
//! one else asks for allocates nothing.
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

/// Where followers wait for a leader's result.
#[derive(Default)]
pub(crate) struct Flight {
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

/// One computation in progress.
struct Registered {
    hash: u64,
    key: Py<PyAny>,
    /// The leading thread.
    leader: usize,
    /// Made by the first follower.
    flight: Option<Arc<Flight>>,
    /// Tells this registration from a later one of the same key.
    id: u64,
}

/// The computations in progress, by key.
#[derive(Default)]
pub(crate) struct Flights {
    table: GilLock<Table>,
}

#[derive(Default)]
struct Table {
    by_key: HashTable<Registered>,
    next_id: u64,
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
        let found = find_entry_or_err(&mut table.by_key, hash, |r| {
            if r.hash == hash {
                eq(&r.key)
            } else {
                Ok(false)
            }
        })?;
        if let Some(mut entry) = found {
            let r = entry.get_mut();
            if r.leader == me {
                return Ok(Role::Recursive);
            }
            return Ok(Role::Follow(r.flight.get_or_insert_default().clone()));
        }
        table.next_id += 1;
        let id = table.next_id;
        table.by_key.insert_unique(
            hash,
            Registered {
                hash,
                key: key.clone().unbind(),
                leader: me,
                flight: None,
                id,
            },
            |r| r.hash,
        );
        Ok(Role::Lead(Lead {
            flights: self,
            hash,
            id: Some(id),
        }))
    }
}

/// The leader's duty: finish the flight, whatever happens. Dropped unfinished (a panic), it
/// wakes the followers with a `RuntimeError`.
pub(crate) struct Lead<'a> {
    flights: &'a Flights,
    hash: u64,
    /// The registration; None once finished.
    id: Option<u64>,
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
        let Some(id) = self.id.take() else {
            return;
        };
        let removed = match self.flights.table.lock(py) {
            Ok(mut table) => table
                .by_key
                .find_entry(self.hash, |r| r.id == id)
                .ok()
                .map(|e| e.remove().0),
            // Only a poisoned table gets here; its followers' wait is lost with it.
            Err(_) => None,
        };
        let Some(Registered { key, flight, .. }) = removed else {
            return;
        };
        // The key is dropped after the table is released: its __del__ may call back.
        drop(key.into_bound(py));
        if let Some(flight) = flight {
            *flight.result.lock() = Some(result);
            flight.done.notify_all();
        }
    }
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if self.id.is_some() {
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
