//! `ratmemcache.Cache`: the cache as an in-process Python cache, with the optional L2 on disk.
//!
//! The hot path (`get`, `set`, `in`) holds the GIL and the one shard lock it needs for the
//! duration of a map operation; it never calls back into Python while a shard is locked (the
//! serializer runs before a write locks and after a read unlocks). With an L2, every call that
//! may touch the disk releases the GIL first.
#![allow(unsafe_code)] // see the SAFETY comments

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString, PyTuple};

use super::args::{choice, duration_ms, eviction_of, size_of_arg, ttl_of};
use super::clock::PyManualClock;
use super::errors::{to_py, type_error};
use crate::cache::{
    Cache, CacheConfig, DeleteOutcome, DeleteRequest, Delta, DeltaOutcome, DeltaRequest, Keyspace,
    ReadOpts, StoreMode, StoreOutcome, StoreRequest, DEFAULT_MAX_MEMORY, LIBRARY_MAX_KEY_LEN,
};
use crate::error::CoreError;
use crate::store::{Compression, DiskConfig, OnCorruption, SyncMode, DEFAULT_FILE_THRESHOLD};
use crate::tiered::{TierConfig, Tiered, WriteStrategy, DEFAULT_LARGE_VALUE_THRESHOLD};

/// Client flag bit set on values that went through the `serializer`; plain `bytes` are stored
/// with flags 0, so they read back as `bytes` with or without a serializer.
pub(crate) const FLAG_SERIALIZED: u32 = 1;

// The signature below spells the default as a literal so Python's introspection shows it.
const _: () = assert!(LIBRARY_MAX_KEY_LEN == 65536);

/// A value on its way into the cache: a borrowed `bytes`, or bytes made from something else.
enum Payload<'py> {
    Bytes(Bound<'py, PyBytes>),
    Owned(Vec<u8>),
}

impl Payload<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Bytes(b) => b.as_bytes(),
            Payload::Owned(v) => v,
        }
    }
}

struct Serializer {
    dumps: Py<PyAny>,
    loads: Py<PyAny>,
}

#[pyclass(module = "ratmemcache._core", name = "Cache", frozen, subclass)]
pub(crate) struct PyCache {
    pub(crate) core: super::Released<Arc<Tiered>>,
    serializer: Option<Serializer>,
    closed: AtomicBool,
}

/// A key as the core sees it: its bytes, and whether the caller gave it as `str`.
///
/// `str` is tried first (most keys are), straight through the C API: PyO3's failed cast to
/// `bytes` and its checked conversion cost more than the lookup itself.
#[inline]
fn key_of<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<(&'a [u8], bool)> {
    let p = obj.as_ptr();
    // SAFETY: `p` is a live object and the GIL is held; CPython keeps the UTF-8 form of a `str`
    // (and the buffer of a `bytes`) alive as long as the object, which `'a` borrows.
    unsafe {
        if pyo3::ffi::PyUnicode_Check(p) != 0 {
            let mut len: pyo3::ffi::Py_ssize_t = 0;
            let utf8 = pyo3::ffi::PyUnicode_AsUTF8AndSize(p, &mut len);
            if utf8.is_null() {
                return Err(PyErr::fetch(obj.py()));
            }
            return Ok((std::slice::from_raw_parts(utf8.cast(), len as usize), true));
        }
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok((b.as_bytes(), false));
    }
    Err(type_error(format!(
        "keys must be str or bytes, not {}",
        obj.get_type().name()?
    )))
}

fn delta_of(delta: &Bound<'_, PyAny>) -> PyResult<u64> {
    match delta.extract::<i128>() {
        Ok(d) if (0..=u64::MAX as i128).contains(&d) => Ok(d as u64),
        Ok(d) => Err(to_py(CoreError::BadArgument(format!(
            "delta must be between 0 and 2**64-1, got {d}"
        )))),
        Err(_) => Err(type_error("delta must be an int".into())),
    }
}

impl PyCache {
    #[inline]
    fn open(&self) -> PyResult<&Tiered> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(to_py(CoreError::Closed));
        }
        Ok(&self.core)
    }

    /// Runs `f` on the cache, without the GIL when it may touch the disk.
    #[inline]
    fn io<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&Tiered) -> R + Send) -> PyResult<R> {
        let core = self.open()?;
        Ok(if core.has_l2() {
            py.detach(|| f(core))
        } else {
            f(core)
        })
    }

    /// The bytes to store and their client flags. A `bytes` value is borrowed, not copied: the
    /// core copies it once, into the entry.
    fn encode<'py>(&self, value: &Bound<'py, PyAny>) -> PyResult<(Payload<'py>, u32)> {
        if let Ok(b) = value.cast::<PyBytes>() {
            return Ok((Payload::Bytes(b.clone()), 0));
        }
        if let Some(ser) = &self.serializer {
            let out = ser.dumps.bind(value.py()).call1((value,))?;
            // pickle gives bytes; json gives str, stored as its UTF-8 (json.loads takes bytes).
            if let Ok(b) = out.cast::<PyBytes>() {
                return Ok((Payload::Bytes(b.clone()), FLAG_SERIALIZED));
            }
            if let Ok(s) = out.cast::<PyString>() {
                return Ok((
                    Payload::Owned(s.to_str()?.as_bytes().to_vec()),
                    FLAG_SERIALIZED,
                ));
            }
            return Err(type_error(format!(
                "the serializer's dumps() must return bytes or str, not {}",
                out.get_type().name()?
            )));
        }
        if let Ok(b) = value.cast::<PyByteArray>() {
            return Ok((Payload::Owned(b.to_vec()), 0));
        }
        Err(type_error(format!(
            "values must be bytes, not {}; pass serializer=pickle (or json) to store other objects",
            value.get_type().name()?
        )))
    }

    fn decode<'py>(&self, raw: Bound<'py, PyBytes>, flags: u32) -> PyResult<Bound<'py, PyAny>> {
        match &self.serializer {
            Some(ser) if flags & FLAG_SERIALIZED != 0 => ser.loads.bind(raw.py()).call1((raw,)),
            _ => Ok(raw.into_any()),
        }
    }

    /// A read under the shard lock: copies the value into a new `bytes` and returns its flags.
    #[inline]
    fn fetch<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<(Bound<'py, PyBytes>, u32, u64)>> {
        let core = self.open()?;
        let (k, _) = key_of(key)?;
        if core.has_l2() {
            let item = py.detach(|| core.get(k));
            return Ok(item.map(|i| (PyBytes::new(py, &i.value), i.flags, i.cas)));
        }
        Ok(core.read(k, ReadOpts::GET, |e| {
            (PyBytes::new(py, e.value()), e.flags(), e.cas())
        }))
    }

    fn store(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
        mode: StoreMode,
        cas: Option<u64>,
    ) -> PyResult<StoreOutcome> {
        self.open()?;
        let (k, text) = key_of(key)?;
        let (v, flags) = self.encode(value)?;
        let ttl = ttl_of(ttl)?;
        let req = StoreRequest {
            cas,
            text_key: text,
            ..StoreRequest::new(mode, k, v.as_slice())
                .flags(flags)
                .ttl(ttl)
        };
        let out = self.io(key.py(), |core| core.store(&req))?.map_err(to_py)?;
        if out == StoreOutcome::NoRoom {
            let why = if self.core.config().evictions {
                "does not fit in one shard's memory budget; raise max_memory or lower shards"
            } else {
                "does not fit: the cache is full and evictions are off"
            };
            return Err(to_py(CoreError::TooLarge(format!(
                "the item for key {} {why}",
                key.repr()?
            ))));
        }
        Ok(out)
    }

    fn delta(&self, key: &Bound<'_, PyAny>, d: Delta) -> PyResult<Option<u64>> {
        self.open()?;
        let (k, _) = key_of(key)?;
        let req = DeltaRequest::of(d);
        match self
            .io(key.py(), |core| core.delta(k, &req, |_, n| n))?
            .map_err(to_py)?
        {
            DeltaOutcome::Done(v) => Ok(Some(v)),
            DeltaOutcome::NotFound | DeltaOutcome::Exists => Ok(None),
            DeltaOutcome::NonNumeric => Err(to_py(CoreError::NonNumeric)),
        }
    }
}

#[pymethods]
impl PyCache {
    #[new]
    #[pyo3(signature = (
        max_memory = None,
        max_entries = None,
        eviction = "s3fifo",
        default_ttl = None,
        max_ttl = None,
        cleanup_interval = None,
        shards = None,
        max_key_length = 65536,
        serializer = None,
        clock = None,
        *,
        evictions = true,
        cas = true,
        l2_dir = None,
        l2_max_disk_size = None,
        l2_sync = "periodic",
        l2_write_strategy = "write_through",
        l2_file_threshold = None,
        large_value_threshold = None,
        compression = true,
        compression_threshold = None,
        clear_on_startup = false,
        on_corruption = "fail",
        warm_up = true,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        max_memory: Option<&Bound<'_, PyAny>>,
        max_entries: Option<&Bound<'_, PyAny>>,
        eviction: &str,
        default_ttl: Option<&Bound<'_, PyAny>>,
        max_ttl: Option<&Bound<'_, PyAny>>,
        cleanup_interval: Option<&Bound<'_, PyAny>>,
        shards: Option<usize>,
        max_key_length: usize,
        serializer: Option<&Bound<'_, PyAny>>,
        clock: Option<PyRef<'_, PyManualClock>>,
        evictions: bool,
        cas: bool,
        l2_dir: Option<std::path::PathBuf>,
        l2_max_disk_size: Option<&Bound<'_, PyAny>>,
        l2_sync: &str,
        l2_write_strategy: &str,
        l2_file_threshold: Option<&Bound<'_, PyAny>>,
        large_value_threshold: Option<&Bound<'_, PyAny>>,
        compression: bool,
        compression_threshold: Option<&Bound<'_, PyAny>>,
        clear_on_startup: bool,
        on_corruption: &str,
        warm_up: bool,
    ) -> PyResult<Self> {
        let eviction = eviction_of(eviction)?;
        let config = CacheConfig {
            max_memory: size_of_arg(max_memory, "max_memory", DEFAULT_MAX_MEMORY)?,
            max_entries: size_of_arg(max_entries, "max_entries", 0)?,
            eviction,
            default_ttl_ms: duration_ms(default_ttl, "default_ttl")?,
            max_ttl_ms: duration_ms(max_ttl, "max_ttl")?,
            cleanup_interval_ms: match cleanup_interval {
                Some(c) if !c.is_none() => duration_ms(Some(c), "cleanup_interval")?,
                _ => 60_000,
            },
            shards: shards.unwrap_or(0),
            max_key_len: max_key_length,
            evictions,
            cas_uniques: cas,
        };
        let serializer = match serializer.filter(|s| !s.is_none()) {
            None => None,
            Some(s) => {
                let (Ok(dumps), Ok(loads)) = (s.getattr("dumps"), s.getattr("loads")) else {
                    return Err(type_error(
                        "serializer must have dumps() and loads(), like the pickle or json modules"
                            .into(),
                    ));
                };
                Some(Serializer {
                    dumps: dumps.unbind(),
                    loads: loads.unbind(),
                })
            }
        };
        let clock = PyManualClock::or_system(clock);
        let l1 = Cache::with_clock(config, clock).map_err(to_py)?;
        let core = match l2_dir {
            None => Tiered::memory(l1),
            Some(dir) => {
                let cleanup = std::time::Duration::from_millis(l1.config().cleanup_interval_ms);
                let disk = DiskConfig {
                    dir,
                    max_disk_size: size_of_arg(l2_max_disk_size, "l2_max_disk_size", 1 << 30)?,
                    sync: choice(
                        "l2_sync",
                        l2_sync,
                        &[
                            ("always", SyncMode::Always),
                            ("periodic", SyncMode::Periodic),
                            ("never", SyncMode::Never),
                        ],
                    )?,
                    compression: Compression {
                        enabled: compression,
                        threshold: size_of_arg(
                            compression_threshold,
                            "compression_threshold",
                            1024,
                        )? as usize,
                    },
                    on_corruption: choice(
                        "on_corruption",
                        on_corruption,
                        &[("fail", OnCorruption::Fail), ("reset", OnCorruption::Reset)],
                    )?,
                    clear_on_startup,
                    cleanup_interval: cleanup,
                    file_threshold: size_of_arg(
                        l2_file_threshold,
                        "l2_file_threshold",
                        DEFAULT_FILE_THRESHOLD as u64,
                    )? as usize,
                    ..DiskConfig::default()
                };
                let tiers = TierConfig {
                    strategy: choice(
                        "l2_write_strategy",
                        l2_write_strategy,
                        &[
                            ("write_through", WriteStrategy::WriteThrough),
                            ("write_back", WriteStrategy::WriteBack),
                        ],
                    )?,
                    large_value_threshold: size_of_arg(
                        large_value_threshold,
                        "large_value_threshold",
                        DEFAULT_LARGE_VALUE_THRESHOLD as u64,
                    )? as usize,
                    warm_up,
                };
                py.detach(|| Tiered::open(l1, disk, tiers)).map_err(to_py)?
            }
        };
        Ok(PyCache {
            core: super::Released::new(core),
            serializer,
            closed: AtomicBool::new(false),
        })
    }

    /// The value for `key`, or `default` on a miss.
    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.fetch(py, key)? {
            Some((raw, flags, _)) => self.decode(raw, flags),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }

    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.fetch(py, key)? {
            Some((raw, flags, _)) => self.decode(raw, flags),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    /// `(value, cas_unique)` for `key`, or None; pass the unique to `cas()`.
    fn gets<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        match self.fetch(py, key)? {
            Some((raw, flags, cas)) => {
                let v = self.decode(raw, flags)?;
                Ok(Some(PyTuple::new(
                    py,
                    [v, cas.into_pyobject(py)?.into_any()],
                )?))
            }
            None => Ok(None),
        }
    }

    /// A dict of the keys that hit.
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        for key in keys.try_iter()? {
            let key = key?;
            if let Some((raw, flags, _)) = self.fetch(py, &key)? {
                out.set_item(&key, self.decode(raw, flags)?)?;
            }
        }
        Ok(out)
    }

    /// Stores `value`; `ttl` in seconds (None = the default TTL, 0 = never).
    #[pyo3(signature = (key, value, ttl = None))]
    fn set(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.store(key, value, ttl, StoreMode::Set, None)
            .map(|_| ())
    }

    fn __setitem__(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.store(key, value, None, StoreMode::Set, None)
            .map(|_| ())
    }

    /// The original RatMemCache's name for `set(key, value, ttl)`.
    fn set_with_ttl(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.store(key, value, Some(ttl), StoreMode::Set, None)
            .map(|_| ())
    }

    #[pyo3(signature = (mapping, ttl = None))]
    fn set_many(&self, mapping: &Bound<'_, PyAny>, ttl: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        // A mapping, or any iterable of (key, value) pairs.
        let items = if let Ok(d) = mapping.cast::<PyDict>() {
            d.items().into_any()
        } else if mapping.hasattr("items")? {
            mapping.call_method0("items")?
        } else {
            mapping.clone()
        };
        for pair in items.try_iter()? {
            let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?.extract()?;
            self.store(&k, &v, ttl, StoreMode::Set, None)?;
        }
        Ok(())
    }

    /// Stores only if `key` is absent; True if stored.
    #[pyo3(signature = (key, value, ttl = None))]
    fn add(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        Ok(matches!(
            self.store(key, value, ttl, StoreMode::Add, None)?,
            StoreOutcome::Stored(_)
        ))
    }

    /// Stores only if `key` is present; True if stored.
    #[pyo3(signature = (key, value, ttl = None))]
    fn replace(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        Ok(matches!(
            self.store(key, value, ttl, StoreMode::Replace, None)?,
            StoreOutcome::Stored(_)
        ))
    }

    /// Appends bytes to an existing value; True if the key existed.
    fn append(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyBytes>) -> PyResult<bool> {
        Ok(matches!(
            self.store(key, value.as_any(), None, StoreMode::Append, None)?,
            StoreOutcome::Stored(_)
        ))
    }

    /// Prepends bytes to an existing value; True if the key existed.
    fn prepend(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyBytes>) -> PyResult<bool> {
        Ok(matches!(
            self.store(key, value.as_any(), None, StoreMode::Prepend, None)?,
            StoreOutcome::Stored(_)
        ))
    }

    /// Stores only if the entry's CAS unique (from `gets`) is still `cas_unique`.
    #[pyo3(signature = (key, value, cas_unique, ttl = None))]
    fn cas(
        &self,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        cas_unique: u64,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        Ok(matches!(
            self.store(key, value, ttl, StoreMode::Set, Some(cas_unique))?,
            StoreOutcome::Stored(_)
        ))
    }

    /// Adds `delta` to a decimal value (wrapping at 2**64); the new value, or None if absent.
    #[pyo3(signature = (key, delta = None))]
    fn incr(
        &self,
        key: &Bound<'_, PyAny>,
        delta: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<u64>> {
        let d = delta.map(delta_of).transpose()?.unwrap_or(1);
        self.delta(key, Delta::Incr(d))
    }

    /// Subtracts `delta` from a decimal value (stopping at 0); the new value, or None if absent.
    #[pyo3(signature = (key, delta = None))]
    fn decr(
        &self,
        key: &Bound<'_, PyAny>,
        delta: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<u64>> {
        let d = delta.map(delta_of).transpose()?.unwrap_or(1);
        self.delta(key, Delta::Decr(d))
    }

    /// Sets a new TTL on a live entry; True if it existed.
    #[pyo3(signature = (key, ttl = None))]
    fn touch(&self, key: &Bound<'_, PyAny>, ttl: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        self.open()?;
        let (k, _) = key_of(key)?;
        let ttl = ttl_of(ttl)?;
        self.io(key.py(), |core| {
            core.read(k, ReadOpts::TOUCH, |e| e.set_ttl(ttl)).is_some()
        })
    }

    /// Seconds until `key` expires: None if absent, `inf` if it never expires.
    fn ttl(&self, key: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
        self.open()?;
        let (k, _) = key_of(key)?;
        self.io(key.py(), |core| {
            core.peek(k).map(|i| match i.expires_at {
                0 => f64::INFINITY,
                t => t.saturating_sub(core.now_ms()) as f64 / 1000.0,
            })
        })
    }

    /// Removes `key`; True if it was present.
    fn delete(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.open()?;
        let (k, _) = key_of(key)?;
        let req = DeleteRequest::default();
        Ok(matches!(
            self.io(key.py(), |core| core.delete(k, &req))?
                .map_err(to_py)?,
            DeleteOutcome::Deleted
        ))
    }

    fn __delitem__(&self, key: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.delete(key)? {
            Ok(())
        } else {
            Err(PyKeyError::new_err(key.clone().unbind()))
        }
    }

    /// True if a live entry exists; not counted as a read.
    fn contains_key(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.open()?;
        let (k, _) = key_of(key)?;
        self.io(key.py(), |core| core.contains(k))
    }

    fn __contains__(&self, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.contains_key(key)
    }

    /// The live keys, as `str` where they were set as `str`, else `bytes`.
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        Ok(self
            .io(py, |core| core.keys())?
            .map_err(to_py)?
            .into_iter()
            .map(|(k, text)| match std::str::from_utf8(&k) {
                Ok(s) if text => PyString::new(py, s).into_any(),
                _ => PyBytes::new(py, &k).into_any(),
            })
            .collect())
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let keys = self.keys(py)?;
        pyo3::types::PyList::new(py, keys)?
            .try_iter()
            .map(Bound::into_any)
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.io(py, |core| core.len())? as usize)
    }

    /// Removes every entry, from both tiers (counters are kept).
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        self.io(py, |core| core.clear())
    }

    /// Reclaims expired entries now, in both tiers; returns how many.
    fn sweep_expired(&self, py: Python<'_>) -> PyResult<u64> {
        self.io(py, |core| core.sweep_expired())?.map_err(to_py)
    }

    /// Waits until every write so far has reached the L2 file, and fsyncs it. A no-op without
    /// an L2.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        self.io(py, |core| core.flush(true))?.map_err(to_py)
    }

    /// Counters and sizes. memcached's names (`get_hits`, `curr_items`, ...) plus short aliases.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.core.stats();
        let c = s.counters;
        let d = PyDict::new(py);
        let gets = s.gets();
        for (k, v) in [
            ("gets", gets),
            ("hits", c.get_hits),
            ("misses", c.get_misses),
            ("sets", c.cmd_set),
            ("evictions", c.evictions),
            ("expirations", c.expirations),
            ("curr_items", s.curr_items),
            ("bytes", s.bytes),
            ("payload_bytes", s.payload_bytes),
            ("limit_maxbytes", s.limit_maxbytes),
            ("limit_entries", s.limit_entries),
            ("shards", s.shards),
            ("cmd_get", gets),
            ("get_hits", c.get_hits),
            ("get_misses", c.get_misses),
            ("get_expired", c.get_expired),
            ("cmd_set", c.cmd_set),
            ("total_items", c.total_items),
            ("delete_hits", c.delete_hits),
            ("delete_misses", c.delete_misses),
            ("incr_hits", c.incr_hits),
            ("incr_misses", c.incr_misses),
            ("decr_hits", c.decr_hits),
            ("decr_misses", c.decr_misses),
            ("cas_hits", c.cas_hits),
            ("cas_misses", c.cas_misses),
            ("cas_badval", c.cas_badval),
            ("touch_hits", c.touch_hits),
            ("touch_misses", c.touch_misses),
            ("evicted_unfetched", c.evicted_unfetched),
            ("expired_unfetched", c.expired_unfetched),
        ] {
            d.set_item(k, v)?;
        }
        d.set_item(
            "hit_ratio",
            if gets == 0 {
                0.0
            } else {
                c.get_hits as f64 / gets as f64
            },
        )?;
        d.set_item("eviction", self.core.config().eviction.name())?;
        if let Some(t) = self.core.tier_stats() {
            for (k, v) in t.fields() {
                d.set_item(k, v)?;
            }
        }
        Ok(d)
    }

    /// The eviction policy's canonical name.
    #[getter]
    fn eviction(&self) -> &'static str {
        self.core.config().eviction.name()
    }

    /// The memory limit in bytes (0 = none). Assigning it (an int or a size string such as
    /// "256MB") changes it at run time, as memcached's `cache_memlimit` does: a lower limit
    /// evicts down to it at once.
    #[getter]
    fn max_memory(&self) -> u64 {
        self.core.l1().max_memory()
    }

    #[setter(max_memory)]
    fn set_max_memory(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let core = self.open()?;
        let bytes = size_of_arg(Some(value), "max_memory", 0)?;
        py.detach(|| core.l1().set_max_memory(bytes));
        Ok(())
    }

    #[getter]
    fn max_entries(&self) -> u64 {
        self.core.config().max_entries
    }

    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Raises AssertionError if an internal invariant is broken (for tests).
    fn check_invariants(&self) -> PyResult<()> {
        self.core
            .validate()
            .map_err(pyo3::exceptions::PyAssertionError::new_err)
    }

    /// Stops background work and closes the cache; later calls raise CacheClosedError. With an
    /// L2, everything written is committed durably first (and with write_back, the L1 is written
    /// down), so a restart serves it all.
    fn shutdown(&self, py: Python<'_>) -> PyResult<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let core = &self.core;
        py.detach(|| core.close()).map_err(to_py)
    }

    /// Same as `shutdown()`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.shutdown(py)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.shutdown(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let c = self.core.config();
        format!(
            "Cache(eviction={:?}, max_memory={}, max_entries={}, len={}{})",
            c.eviction.name(),
            self.core.l1().max_memory(),
            c.max_entries,
            self.core.len(),
            if self.closed.load(Ordering::Relaxed) {
                ", closed"
            } else {
                ""
            }
        )
    }
}
