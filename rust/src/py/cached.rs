//! The native `@cached` wrapper: a call runs in Rust up to the user's function.
//!
//! Keys are made from the arguments as `functools.lru_cache` makes them: positional and keyword
//! arguments are order-sensitive, one `int` or `str` argument is its own key, `typed` adds the
//! argument types. A wrapper with its own cache keys by the arguments alone; one that shares an
//! `ObjectCache` prefixes its keys with the function's qualified name, so functions sharing a
//! cache never read each other's results.
//!
//! A miss computes under single flight (`single_flight`): concurrent callers of the same
//! missing key wait for one call. Coroutine functions are wrapped in Python
//! (`ratmemcache.decorators`), on top of this object's `cache_key`, `_lookup` and `_store`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyInt, PyString, PyTuple};

use super::args::{eviction_of, ttl_of};
use super::errors::type_error;
use super::objects::{hash_of, ObjectCore, PyObjectCache};
use crate::cache::objects::ObjectLimits;
use crate::cache::{SystemClock, Ttl, TtlRules};

/// A call counter. Calls hold the GIL, so a plain load and store (no atomic add) is exact.
#[derive(Default)]
struct Count(AtomicU64);

impl Count {
    #[inline]
    fn bump(&self) {
        self.0
            .store(self.0.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// Separates positional from keyword arguments in a key, as functools' `kwd_mark` does.
static KWD_MARK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static METHOD_TYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static CACHE_INFO: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn cached_object<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || py.import(module)?.getattr(name).map(Bound::unbind))
        .map(|o| o.bind(py).clone())
}

fn kwd_mark(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    KWD_MARK
        .get_or_try_init(py, || {
            py.import("builtins")?
                .getattr("object")?
                .call0()
                .map(Bound::unbind)
        })
        .map(|o| o.bind(py).clone())
}

/// `functools._make_key`: the arguments, flattened, with the keyword names and (if `typed`)
/// the types; a lone `int` or `str` argument is its own key.
#[inline]
fn lru_key<'py>(
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
    typed: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let py = args.py();
    let kwargs = kwargs.filter(|k| !k.is_empty());
    if kwargs.is_none() && !typed {
        if args.len() == 1 {
            let only = args.get_item(0)?;
            if only.is_exact_instance_of::<PyInt>() || only.is_exact_instance_of::<PyString>() {
                return Ok(only);
            }
        }
        return Ok(args.clone().into_any());
    }
    let mut parts: Vec<Bound<'py, PyAny>> = args.iter().collect();
    if let Some(kw) = kwargs {
        parts.push(kwd_mark(py)?);
        for (k, v) in kw.iter() {
            parts.push(k);
            parts.push(v);
        }
    }
    if typed {
        parts.extend(args.iter().map(|a| a.get_type().into_any()));
        if let Some(kw) = kwargs {
            parts.extend(kw.values().iter().map(|v| v.get_type().into_any()));
        }
    }
    Ok(PyTuple::new(py, parts)?.into_any())
}

#[pyclass(
    module = "ratmemcache._core",
    name = "CachedFunction",
    frozen,
    dict,
    weakref
)]
pub(crate) struct PyCachedFunction {
    func: Py<PyAny>,
    cache: Py<PyObjectCache>,
    core: Arc<ObjectCore>,
    /// Set when the cache is shared: keys are `(namespace, key)`.
    namespace: Option<Py<PyAny>>,
    key_fn: Option<Py<PyAny>>,
    typed: bool,
    ttl: Ttl,
    ttl_arg: Option<Py<PyAny>>,
    /// `maxsize` as given; `Some(0)` caches nothing, as in functools.
    maxsize: Option<u64>,
    hits: Count,
    misses: Count,
}

impl PyCachedFunction {
    #[inline]
    fn make_key<'py>(
        &self,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = args.py();
        let key = match &self.key_fn {
            Some(f) => f.bind(py).call(args, kwargs)?,
            None => lru_key(args, kwargs, self.typed)?,
        };
        match &self.namespace {
            None => Ok(key),
            Some(ns) => Ok(PyTuple::new(py, [ns.bind(py).clone(), key])?.into_any()),
        }
    }

    fn stores(&self) -> bool {
        self.maxsize != Some(0)
    }

    /// Whether `key` is one of this function's keys in a shared cache.
    fn is_mine(&self, key: &Bound<'_, PyAny>) -> bool {
        let Some(ns) = &self.namespace else {
            return true;
        };
        key.cast::<PyTuple>()
            .ok()
            .filter(|t| t.len() == 2)
            .and_then(|t| t.get_item(0).ok())
            .is_some_and(|first| first.is(ns.bind(key.py())))
    }
}

#[pymethods]
impl PyCachedFunction {
    #[new]
    #[pyo3(
        signature = (func, cache = None, *, maxsize = Some(128), typed = false, ttl = None, key = None, eviction = "s3fifo"),
        text_signature = "(func, cache=None, *, maxsize=128, typed=False, ttl=None, key=None, eviction='s3fifo')"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        func: &Bound<'_, PyAny>,
        cache: Option<Bound<'_, PyObjectCache>>,
        maxsize: Option<i64>,
        typed: bool,
        ttl: Option<&Bound<'_, PyAny>>,
        key: Option<&Bound<'_, PyAny>>,
        eviction: &str,
    ) -> PyResult<Self> {
        if !func.is_callable() {
            return Err(type_error(format!(
                "cached() needs a callable, not {}",
                func.get_type().name()?
            )));
        }
        if let Some(k) = key.filter(|k| !k.is_none() && !k.is_callable()) {
            return Err(type_error(format!(
                "key must be a callable key(*args, **kwargs), not {}",
                k.get_type().name()?
            )));
        }
        // functools treats a negative maxsize as 0.
        let maxsize = maxsize.map(|n| n.max(0) as u64);
        let (cache, namespace) = match cache {
            Some(c) => {
                let name = match (func.getattr("__module__"), func.getattr("__qualname__")) {
                    (Ok(m), Ok(q)) => format!("{m}.{q}"),
                    _ => func.repr()?.to_string(),
                };
                (
                    c.unbind(),
                    Some(PyString::new(py, &name).into_any().unbind()),
                )
            }
            None => {
                let limits = ObjectLimits {
                    max_entries: maxsize.filter(|&n| n > 0),
                    max_weight: None,
                };
                let core = ObjectCore::new(
                    py,
                    eviction_of(eviction)?,
                    limits,
                    TtlRules::default(),
                    None,
                    Arc::new(SystemClock),
                )?;
                let cache = Py::new(py, PyObjectCache::wrap(Arc::new(core)))?;
                (cache, None)
            }
        };
        let core = cache.get().core.clone();
        Ok(PyCachedFunction {
            func: func.clone().unbind(),
            cache,
            core,
            namespace,
            key_fn: key.filter(|k| !k.is_none()).map(|k| k.clone().unbind()),
            typed,
            ttl: ttl_of(ttl)?,
            ttl_arg: ttl.filter(|t| !t.is_none()).map(|t| t.clone().unbind()),
            maxsize,
            hits: Count::default(),
            misses: Count::default(),
        })
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        &self,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let key = self.make_key(args, kwargs)?;
        let hash = hash_of(&key)?;
        if let Some(v) = self.core.get(&key, hash)? {
            self.hits.bump();
            return Ok(v);
        }
        self.misses.bump();
        let call = || self.func.bind(args.py()).call(args, kwargs);
        if !self.stores() {
            return call();
        }
        self.core.compute(&key, hash, self.ttl, call)
    }

    /// Binds to an instance, so a cached method gets `self` (part of the key).
    fn __get__<'py>(
        slf: &Bound<'py, Self>,
        obj: Option<&Bound<'py, PyAny>>,
        owner: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = owner;
        match obj {
            None => Ok(slf.clone().into_any()),
            Some(o) => {
                cached_object(slf.py(), &METHOD_TYPE, "types", "MethodType")?.call1((slf, o))
            }
        }
    }

    /// The key a call with these arguments uses.
    #[pyo3(signature = (*args, **kwargs))]
    fn cache_key<'py>(
        &self,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.make_key(args, kwargs)
    }

    /// Forgets the result for these arguments; True if there was one.
    #[pyo3(signature = (*args, **kwargs))]
    fn cache_invalidate(
        &self,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<bool> {
        let key = self.make_key(args, kwargs)?;
        Ok(self.core.remove(&key, hash_of(&key)?)?.is_some())
    }

    /// `CacheInfo(hits, misses, maxsize, currsize)`, as `functools.lru_cache` reports it.
    fn cache_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let currsize = if self.namespace.is_some() {
            self.core
                .items(py)?
                .iter()
                .filter(|(k, _)| self.is_mine(k))
                .count()
        } else {
            self.core.lock(py)?.len()
        };
        let maxsize = match self.namespace {
            Some(_) => self.core.lock(py)?.limits().max_entries,
            None => self.maxsize,
        };
        cached_object(py, &CACHE_INFO, "ratmemcache.decorators", "CacheInfo")?.call1((
            self.hits.get(),
            self.misses.get(),
            maxsize,
            currsize,
        ))
    }

    /// Forgets every result of this function and resets `cache_info()`.
    fn cache_clear(&self, py: Python<'_>) -> PyResult<()> {
        if self.namespace.is_some() {
            self.core.remove_where(py, |k| self.is_mine(k))?;
        } else {
            self.core.clear(py)?;
            self.core.lock(py)?.reset_counters();
        }
        self.hits.reset();
        self.misses.reset();
        Ok(())
    }

    /// The decorator's settings: maxsize, typed, ttl and eviction.
    fn cache_parameters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("maxsize", self.maxsize)?;
        d.set_item("typed", self.typed)?;
        d.set_item("ttl", self.ttl_arg.as_ref().map(|t| t.bind(py)))?;
        d.set_item("eviction", self.core.lock(py)?.kind().name())?;
        Ok(d)
    }

    /// The `ObjectCache` that holds the results.
    #[getter]
    fn cache(&self, py: Python<'_>) -> Py<PyObjectCache> {
        self.cache.clone_ref(py)
    }

    /// For the coroutine wrapper: the cached value for `key` (counted), or `default`.
    fn _lookup<'py>(
        &self,
        key: &Bound<'py, PyAny>,
        default: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.core.get(key, hash_of(key)?)? {
            Some(v) => {
                self.hits.bump();
                Ok(v)
            }
            None => {
                self.misses.bump();
                Ok(default)
            }
        }
    }

    /// For the coroutine wrapper: stores a result (unless maxsize is 0 or it is too heavy).
    fn _store(&self, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.stores() {
            self.core.set(key, hash_of(key)?, value, self.ttl)?;
        }
        Ok(())
    }

    /// Pickled by reference, as functions are.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        slf.getattr("__qualname__")
    }

    fn __copy__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __deepcopy__(slf: Py<Self>, _memo: &Bound<'_, PyAny>) -> Py<Self> {
        slf
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let name = slf
            .getattr("__qualname__")
            .or_else(|_| slf.get().func.bind(slf.py()).repr().map(Bound::into_any))?;
        Ok(format!("<cached function {name}>"))
    }
}
