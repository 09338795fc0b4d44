//! `ratmemcache.ObjectCache`: Python objects kept by reference, under the core's eviction
//! policies and TTL rules (`cache::objects`).
//!
//! Keys are any hashable object, compared as a dict compares them: the Python hash, then
//! identity, then `==`. The table is guarded by the GIL (`GilLock`); nothing Python-side is
//! dropped while it is held, because a value's `__del__` may call back into the cache.
#![allow(unsafe_code)] // see the SAFETY comments

use std::sync::Arc;

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};

use super::args::{duration_ms, eviction_of, size_of_arg, ttl_of};
use super::clock::PyManualClock;
use super::errors::{config_error, type_error};
use super::gil_lock::{GilGuard, GilLock};
use super::single_flight::{Flights, Role};
use crate::cache::objects::{Garbage, NewEntry, Now, ObjectLimits, ObjectTable, Put, PutMode};
use crate::cache::{Clock, PolicyKind, Ttl, TtlRules};

pub(crate) type Table = ObjectTable<Py<PyAny>, Py<PyAny>>;

/// Spreads a Python hash over all 64 bits. Small ints hash to themselves, which would leave the
/// top bits, where hashbrown takes its 7-bit tag, zero for every key.
#[inline]
pub(crate) fn spread(hash: isize) -> u64 {
    let m = (hash as u64 as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (m as u64) ^ ((m >> 64) as u64)
}

/// A key's spread hash; `TypeError` for an unhashable key, as a dict raises it.
#[inline]
pub(crate) fn hash_of(key: &Bound<'_, PyAny>) -> PyResult<u64> {
    key.hash().map(spread)
}

/// Key equality as a dict decides it: identity, then `stored == key`.
#[inline]
pub(crate) fn same_key<'a>(
    key: &'a Bound<'_, PyAny>,
) -> impl FnMut(&Py<PyAny>) -> PyResult<bool> + 'a {
    move |stored| {
        if stored.as_ptr() == key.as_ptr() {
            return Ok(true);
        }
        // SAFETY: both are live objects and the GIL is held.
        match unsafe {
            pyo3::ffi::PyObject_RichCompareBool(stored.as_ptr(), key.as_ptr(), pyo3::ffi::Py_EQ)
        } {
            -1 => Err(PyErr::fetch(key.py())),
            r => Ok(r == 1),
        }
    }
}

/// Drops what left the table, now that it is released. Through `Bound`: a `Py` would look up
/// whether this thread holds the GIL on every drop.
#[inline]
fn dispose(py: Python<'_>, garbage: Garbage<Py<PyAny>, Py<PyAny>>) {
    if garbage.is_empty() {
        return;
    }
    for (k, v) in garbage {
        drop(k.into_bound(py));
        drop(v.into_bound(py));
    }
}

/// What [`ObjectCore::put`] did.
pub(crate) enum PutOutcome<'py> {
    Stored,
    /// `IfAbsent` found this live value.
    Present(Bound<'py, PyAny>),
    /// The value alone weighs more than `max_memory`; nothing changed.
    TooHeavy,
}

/// How an entry's weight is found, for `max_memory`.
enum Weigher {
    /// No memory bound and no weigher: nothing is weighed, every weight is 0.
    Off,
    /// `sys.getsizeof(key) + sys.getsizeof(value)` plus the table's own bytes per entry.
    SizeOf { getsizeof: Py<PyAny>, overhead: u64 },
    /// The caller's `weigher(key, value)`, counted as it is.
    Custom(Py<PyAny>),
}

/// The table and its rules, shared by an `ObjectCache` and the `@cached` functions that use it.
pub(crate) struct ObjectCore {
    table: GilLock<Table>,
    clock: Arc<dyn Clock>,
    rules: TtlRules,
    weigher: Weigher,
    pub(crate) flights: Flights,
}

impl ObjectCore {
    pub(crate) fn new(
        py: Python<'_>,
        kind: PolicyKind,
        limits: ObjectLimits,
        rules: TtlRules,
        weigher: Option<Py<PyAny>>,
        clock: Arc<dyn Clock>,
    ) -> PyResult<ObjectCore> {
        let table = Table::new(kind, limits);
        let weigher = match weigher {
            Some(f) => Weigher::Custom(f),
            None if limits.max_weight.is_some() => Weigher::SizeOf {
                getsizeof: py.import("sys")?.getattr("getsizeof")?.unbind(),
                overhead: table.entry_overhead(),
            },
            None => Weigher::Off,
        };
        Ok(ObjectCore {
            table: GilLock::new(table),
            clock,
            rules,
            weigher,
            flights: Flights::default(),
        })
    }

    #[inline]
    pub(crate) fn lock<'a>(&'a self, py: Python<'a>) -> PyResult<GilGuard<'a, Table>> {
        self.table.lock(py)
    }

    #[inline]
    fn now(&self) -> Now<impl Fn() -> u64 + '_> {
        Now::new(|| self.clock.now_ms())
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The deadline for a write now (0 = never).
    #[inline]
    pub(crate) fn deadline(&self, ttl: Ttl) -> u64 {
        // Only `At` and `Expired` give None, and no Python call makes them.
        self.rules
            .deadline(ttl, || self.clock.now_ms())
            .unwrap_or(0)
    }

    #[inline]
    fn weigh(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<u64> {
        match self.weigher {
            Weigher::Off => Ok(0),
            _ => self.weigh_slow(key, value),
        }
    }

    fn weigh_slow(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<u64> {
        let py = key.py();
        let n = match &self.weigher {
            Weigher::Off => return Ok(0),
            Weigher::SizeOf {
                getsizeof,
                overhead,
            } => {
                let f = getsizeof.bind(py);
                return Ok(f.call1((key,))?.extract::<u64>()?
                    + f.call1((value,))?.extract::<u64>()?
                    + overhead);
            }
            Weigher::Custom(f) => f.bind(py).call1((key, value))?,
        };
        n.extract::<u64>().map_err(|_| {
            PyValueError::new_err(format!(
                "the weigher must return an int >= 0, got {}",
                n.repr().map_or_else(|_| "?".into(), |r| r.to_string())
            ))
        })
    }

    /// The live value, counted as a hit or a miss.
    #[inline]
    pub(crate) fn get<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        hash: u64,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = key.py();
        let mut garbage = Garbage::new();
        let found = self
            .lock(py)?
            .get(hash, same_key(key), &mut self.now(), &mut garbage)?
            .map(|v| v.clone_ref(py).into_bound(py));
        dispose(py, garbage);
        Ok(found)
    }

    /// The live value and its deadline, not counted as a read.
    pub(crate) fn peek<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        hash: u64,
    ) -> PyResult<Option<(Bound<'py, PyAny>, u64)>> {
        let py = key.py();
        let mut garbage = Garbage::new();
        let found = self
            .lock(py)?
            .peek(hash, same_key(key), &mut self.now(), &mut garbage)?
            .map(|(v, exp)| (v.clone_ref(py).into_bound(py), exp));
        dispose(py, garbage);
        Ok(found)
    }

    /// Stores a value (`Overwrite`), or only if the key has no live entry (`IfAbsent`).
    #[inline]
    pub(crate) fn put<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        hash: u64,
        value: &Bound<'py, PyAny>,
        ttl: Ttl,
        mode: PutMode,
    ) -> PyResult<PutOutcome<'py>> {
        let py = key.py();
        let new = NewEntry {
            hash,
            key: || key.clone().unbind(),
            value: value.clone().unbind(),
            weight: self.weigh(key, value)?,
            expires_at: self.deadline(ttl),
        };
        let mut garbage = Garbage::new();
        let out =
            match self
                .lock(py)?
                .put(new, mode, same_key(key), &mut self.now(), &mut garbage)?
            {
                Put::Inserted => PutOutcome::Stored,
                Put::Replaced { old } => {
                    drop(old.into_bound(py));
                    PutOutcome::Stored
                }
                Put::Present { existing, value } => {
                    let existing = existing.clone_ref(py).into_bound(py);
                    drop(value.into_bound(py));
                    PutOutcome::Present(existing)
                }
                Put::TooHeavy { value } => {
                    drop(value.into_bound(py));
                    PutOutcome::TooHeavy
                }
            };
        dispose(py, garbage);
        Ok(out)
    }

    /// Stores a value; false (and nothing changed) when it alone weighs more than `max_memory`.
    #[inline]
    pub(crate) fn set(
        &self,
        key: &Bound<'_, PyAny>,
        hash: u64,
        value: &Bound<'_, PyAny>,
        ttl: Ttl,
    ) -> PyResult<bool> {
        Ok(!matches!(
            self.put(key, hash, value, ttl, PutMode::Overwrite)?,
            PutOutcome::TooHeavy
        ))
    }

    /// Removes the entry; its value if it was live.
    pub(crate) fn remove<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        hash: u64,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = key.py();
        let removed = self
            .lock(py)?
            .remove(hash, same_key(key), &mut self.now())?;
        Ok(removed.filter(|r| r.live).map(|r| r.value.into_bound(py)))
    }

    /// Gives a live entry a new lifetime; false if there is none.
    pub(crate) fn touch(&self, key: &Bound<'_, PyAny>, hash: u64, ttl: Ttl) -> PyResult<bool> {
        let py = key.py();
        let expires_at = self.deadline(ttl);
        let mut garbage = Garbage::new();
        let found = self.lock(py)?.set_deadline(
            hash,
            same_key(key),
            expires_at,
            &mut self.now(),
            &mut garbage,
        )?;
        dispose(py, garbage);
        Ok(found)
    }

    pub(crate) fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let mut garbage = Garbage::new();
        self.lock(py)?.clear(&mut garbage);
        dispose(py, garbage);
        Ok(())
    }

    /// Live entries as `(key, value)` pairs, a snapshot.
    pub(crate) fn items<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
        let t = self.lock(py)?;
        let mut out = Vec::with_capacity(t.len());
        t.for_each_live(&mut self.now(), |k, v| {
            out.push((
                k.clone_ref(py).into_bound(py),
                v.clone_ref(py).into_bound(py),
            ));
        });
        Ok(out)
    }

    /// Removes the live entries whose key passes `pick`; returns how many.
    pub(crate) fn remove_where(
        &self,
        py: Python<'_>,
        mut pick: impl FnMut(&Bound<'_, PyAny>) -> bool,
    ) -> PyResult<usize> {
        let keys: Vec<_> = self
            .items(py)?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| pick(k))
            .collect();
        let mut n = 0;
        for k in keys {
            n += usize::from(self.remove(&k, hash_of(&k)?)?.is_some());
        }
        Ok(n)
    }

    /// `factory()`'s result for a missing key, computed once however many threads ask at the
    /// same time (see `single_flight`), and stored unless it raised.
    pub(crate) fn compute<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        hash: u64,
        ttl: Ttl,
        factory: impl FnOnce() -> PyResult<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = key.py();
        match self.flights.join(key, hash)? {
            Role::Follow(flight) => flight.wait(py),
            Role::Recursive => factory(),
            Role::Lead(lead) => {
                // A flight that finished between our miss and joining stored its value already.
                if let Some((v, _)) = self.peek(key, hash)? {
                    lead.finish(py, &Ok(v.clone()));
                    return Ok(v);
                }
                let result = factory();
                let stored = match &result {
                    Ok(v) => self.set(key, hash, v, ttl).map(drop),
                    Err(_) => Ok(()),
                };
                lead.finish(py, &result);
                stored?;
                result
            }
        }
    }
}

#[pyclass(
    module = "ratmemcache._core",
    name = "ObjectCache",
    frozen,
    subclass,
    weakref
)]
pub(crate) struct PyObjectCache {
    pub(crate) core: Arc<ObjectCore>,
}

/// A bound given as None, or a positive count or size.
fn bound_of(obj: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<Option<u64>> {
    match obj.filter(|o| !o.is_none()) {
        None => Ok(None),
        Some(o) => match size_of_arg(Some(o), name, 0)? {
            0 => Err(config_error(format!(
                "{name} must be at least 1 (None means no bound), got 0"
            ))),
            n => Ok(Some(n)),
        },
    }
}

impl PyObjectCache {
    pub(crate) fn wrap(core: Arc<ObjectCore>) -> Self {
        PyObjectCache { core }
    }

    #[inline]
    fn stored_or_error(&self, key: &Bound<'_, PyAny>, stored: bool) -> PyResult<()> {
        if stored {
            return Ok(());
        }
        self.too_heavy(key)
    }

    #[cold]
    fn too_heavy(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        Err(PyValueError::new_err(format!(
            "the value for key {} weighs more than max_memory ({}); raise max_memory or \
             change the weigher",
            key.repr()?,
            self.core.lock(key.py())?.limits().max_weight.unwrap_or(0)
        )))
    }
}

#[pymethods]
impl PyObjectCache {
    #[new]
    #[pyo3(signature = (
        max_entries = None,
        max_memory = None,
        eviction = "s3fifo",
        default_ttl = None,
        max_ttl = None,
        weigher = None,
        clock = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        max_entries: Option<&Bound<'_, PyAny>>,
        max_memory: Option<&Bound<'_, PyAny>>,
        eviction: &str,
        default_ttl: Option<&Bound<'_, PyAny>>,
        max_ttl: Option<&Bound<'_, PyAny>>,
        weigher: Option<&Bound<'_, PyAny>>,
        clock: Option<PyRef<'_, PyManualClock>>,
    ) -> PyResult<Self> {
        let limits = ObjectLimits {
            max_entries: bound_of(max_entries, "max_entries")?,
            max_weight: bound_of(max_memory, "max_memory")?,
        };
        if limits.max_entries.is_none() && limits.max_weight.is_none() {
            return Err(config_error(
                "ObjectCache needs a bound: max_entries, max_memory, or both",
            ));
        }
        let weigher = match weigher.filter(|w| !w.is_none()) {
            Some(w) if !w.is_callable() => {
                return Err(type_error(format!(
                    "weigher must be a callable weigher(key, value) -> int, not {}",
                    w.get_type().name()?
                )))
            }
            w => w.map(|w| w.clone().unbind()),
        };
        let rules = TtlRules {
            default_ttl_ms: duration_ms(default_ttl, "default_ttl")?,
            max_ttl_ms: duration_ms(max_ttl, "max_ttl")?,
        };
        let clock = PyManualClock::or_system(clock);
        let kind = eviction_of(eviction)?;
        Ok(PyObjectCache {
            core: Arc::new(ObjectCore::new(py, kind, limits, rules, weigher, clock)?),
        })
    }

    /// `ObjectCache[K, V]` in annotations.
    #[classmethod]
    fn __class_getitem__<'py>(
        cls: &Bound<'py, PyType>,
        item: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = cls.py();
        py.import("types")?
            .getattr("GenericAlias")?
            .call1((cls, item))
    }

    /// The value for `key`, or `default` on a miss.
    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.core.get(key, hash_of(key)?)? {
            Some(v) => Ok(v),
            None => Ok(default.unwrap_or_else(|| key.py().None().into_bound(key.py()))),
        }
    }

    fn __getitem__<'py>(&self, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        match self.core.get(key, hash_of(key)?)? {
            Some(v) => Ok(v),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    /// Stores `value` by reference; `ttl` in seconds (None = the default TTL, 0 = never).
    #[pyo3(signature = (key, value, ttl = None))]
    fn set(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let ttl = ttl_of(ttl)?;
        let stored = self.core.set(key, hash_of(key)?, value, ttl)?;
        self.stored_or_error(key, stored)
    }

    fn __setitem__(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let stored = self.core.set(key, hash_of(key)?, value, Ttl::Default)?;
        self.stored_or_error(key, stored)
    }

    fn __delitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        match self.core.remove(key, hash_of(key)?)? {
            Some(_) => Ok(()),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    /// Removes `key`; True if it was present.
    fn delete(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.core.remove(key, hash_of(key)?)?.is_some())
    }

    /// True if a live entry exists; not counted as a read.
    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.core.peek(key, hash_of(key)?)?.is_some())
    }

    /// Entries, including expired ones not reclaimed yet.
    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.core.lock(py)?.len())
    }

    /// Iterates over a snapshot of the live keys.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.keys(py)?.try_iter().map(Bound::into_any)
    }

    /// Removes `key` and returns its value; `default` if absent, else KeyError.
    #[pyo3(signature = (key, *default))]
    fn pop<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        default: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if default.len() > 1 {
            return Err(type_error(format!(
                "pop expected at most 2 arguments, got {}",
                1 + default.len()
            )));
        }
        match self.core.remove(key, hash_of(key)?)? {
            Some(v) => Ok(v),
            None if default.len() == 1 => default.get_item(0),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    /// Removes and returns the `(key, value)` the eviction policy would evict next.
    fn popitem<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        loop {
            let Some(r) = self.core.lock(py)?.pop_victim(&mut self.core.now()) else {
                return Err(PyKeyError::new_err("popitem(): the cache is empty"));
            };
            // An expired entry is dropped, not handed out; the next victim is.
            if r.live {
                return PyTuple::new(py, [r.key.into_bound(py), r.value.into_bound(py)]);
            }
        }
    }

    /// The live value for `key`, or `default` stored now (dict's `setdefault`).
    #[pyo3(signature = (key, default = None, ttl = None))]
    fn setdefault<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
        ttl: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = key.py();
        let default = default.unwrap_or_else(|| py.None().into_bound(py));
        let ttl = ttl_of(ttl)?;
        match self
            .core
            .put(key, hash_of(key)?, &default, ttl, PutMode::IfAbsent)?
        {
            PutOutcome::Stored => Ok(default),
            PutOutcome::Present(v) => Ok(v),
            PutOutcome::TooHeavy => self.too_heavy(key).map(|()| default),
        }
    }

    /// Stores every pair of a mapping or iterable of pairs, then the keyword arguments.
    #[pyo3(signature = (other = None, ttl = None, **kwargs))]
    fn update(
        &self,
        other: Option<&Bound<'_, PyAny>>,
        ttl: Option<&Bound<'_, PyAny>>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let ttl = ttl_of(ttl)?;
        let put = |k: &Bound<'_, PyAny>, v: &Bound<'_, PyAny>| -> PyResult<()> {
            let stored = self.core.set(k, hash_of(k)?, v, ttl)?;
            self.stored_or_error(k, stored)
        };
        if let Some(other) = other.filter(|o| !o.is_none()) {
            let pairs = if let Ok(d) = other.cast::<PyDict>() {
                d.items().into_any()
            } else if other.hasattr("keys")? {
                let m = other.clone();
                let keys = other.call_method0("keys")?;
                let out = PyList::empty(other.py());
                for k in keys.try_iter()? {
                    let k = k?;
                    let v = m.get_item(&k)?;
                    out.append((k, v))?;
                }
                out.into_any()
            } else {
                other.clone()
            };
            for pair in pairs.try_iter()? {
                let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?.extract()?;
                put(&k, &v)?;
            }
        }
        if let Some(kw) = kwargs {
            for (k, v) in kw.iter() {
                put(&k, &v)?;
            }
        }
        Ok(())
    }

    /// The live value for `key`, or `factory()`'s result, stored. Concurrent callers of the same
    /// missing key wait for one call of `factory` and share its result (or its exception, which
    /// is not stored).
    #[pyo3(signature = (key, factory, ttl = None))]
    fn get_or_set<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        factory: &Bound<'py, PyAny>,
        ttl: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let ttl = ttl_of(ttl)?;
        let hash = hash_of(key)?;
        if let Some(v) = self.core.get(key, hash)? {
            return Ok(v);
        }
        self.core.compute(key, hash, ttl, || factory.call0())
    }

    /// The live keys, a snapshot.
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.core.items(py)?.into_iter().map(|(k, _)| k))
    }

    /// The live values, a snapshot.
    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.core.items(py)?.into_iter().map(|(_, v)| v))
    }

    /// The live `(key, value)` pairs, a snapshot.
    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let pairs = self
            .core
            .items(py)?
            .into_iter()
            .map(|(k, v)| PyTuple::new(py, [k, v]))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, pairs)
    }

    /// Removes every entry (the counters are kept).
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        self.core.clear(py)
    }

    /// Seconds until `key` expires: None if absent, `inf` if it never expires.
    fn ttl(&self, key: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
        Ok(self
            .core
            .peek(key, hash_of(key)?)?
            .map(|(_, exp)| match exp {
                0 => f64::INFINITY,
                t => t.saturating_sub(self.core.now_ms()) as f64 / 1000.0,
            }))
    }

    /// Gives a live entry a new lifetime (None = the default TTL, 0 = never); True if it existed.
    #[pyo3(signature = (key, ttl = None))]
    fn touch(&self, key: &Bound<'_, PyAny>, ttl: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let ttl = ttl_of(ttl)?;
        self.core.touch(key, hash_of(key)?, ttl)
    }

    /// Reclaims expired entries now; returns how many.
    fn sweep_expired(&self, py: Python<'_>) -> PyResult<usize> {
        let mut garbage = Garbage::new();
        let n = self
            .core
            .lock(py)?
            .sweep_all(&mut self.core.now(), &mut garbage);
        dispose(py, garbage);
        Ok(n)
    }

    /// Counters and sizes: hits, misses, sets, evictions, expirations, entries, weight.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let t = self.core.lock(py)?;
        let (c, limits) = (t.counters(), t.limits());
        let d = PyDict::new(py);
        for (k, v) in [
            ("hits", c.hits),
            ("misses", c.misses),
            ("sets", c.sets),
            ("evictions", c.evictions),
            ("expirations", c.expirations),
            ("entries", t.len() as u64),
            ("weight", t.weight()),
        ] {
            d.set_item(k, v)?;
        }
        let reads = c.hits + c.misses;
        d.set_item(
            "hit_ratio",
            if reads == 0 {
                0.0
            } else {
                c.hits as f64 / reads as f64
            },
        )?;
        d.set_item("max_entries", limits.max_entries)?;
        d.set_item("max_memory", limits.max_weight)?;
        d.set_item("eviction", t.kind().name())?;
        Ok(d)
    }

    /// The eviction policy's canonical name.
    #[getter]
    fn eviction(&self, py: Python<'_>) -> PyResult<&'static str> {
        Ok(self.core.lock(py)?.kind().name())
    }

    #[getter]
    fn max_entries(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        Ok(self.core.lock(py)?.limits().max_entries)
    }

    #[getter]
    fn max_memory(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        Ok(self.core.lock(py)?.limits().max_weight)
    }

    /// Bytes the default weigher adds to `sys.getsizeof(key) + sys.getsizeof(value)` for each
    /// entry: its bucket, slot record and policy metadata in the table.
    #[getter]
    fn entry_overhead(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.core.lock(py)?.entry_overhead())
    }

    /// Raises AssertionError if an internal invariant is broken (for tests).
    fn check_invariants(&self, py: Python<'_>) -> PyResult<()> {
        self.core
            .lock(py)?
            .validate()
            .map_err(pyo3::exceptions::PyAssertionError::new_err)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let t = self.core.lock(py)?;
        let l = t.limits();
        let show = |b: Option<u64>| b.map_or("None".to_string(), |n| n.to_string());
        Ok(format!(
            "ObjectCache(eviction={:?}, max_entries={}, max_memory={}, len={})",
            t.kind().name(),
            show(l.max_entries),
            show(l.max_weight),
            t.len()
        ))
    }
}
