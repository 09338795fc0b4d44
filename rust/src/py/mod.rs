//! The Python extension `ratmemcache._core`: the only code that imports pyo3.
#![allow(unsafe_code)] // see the SAFETY comments

mod args;
mod cache;
mod cached;
mod clock;
mod errors;
mod gil_lock;
mod native;
mod objects;
mod server;
mod single_flight;

use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};

use pyo3::prelude::*;

/// Holds what a Python object owns of the core, and drops it with the GIL released.
///
/// Dropping the last reference to an L2 cache closes it: the writer thread commits and is
/// joined, and it (like the warm-up thread) may log through Python's `logging` on the way,
/// which takes the GIL. Python objects are freed with the GIL held, so dropping there would
/// deadlock; this releases it first.
pub(crate) struct Released<T: Send>(ManuallyDrop<T>);

impl<T: Send> Released<T> {
    pub(crate) fn new(v: T) -> Self {
        Released(ManuallyDrop::new(v))
    }
}

impl<T: Send> Deref for Released<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Send> DerefMut for Released<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Send> Drop for Released<T> {
    fn drop(&mut self) {
        // SAFETY: taken exactly once, here, and never used again.
        let v = unsafe { ManuallyDrop::take(&mut self.0) };
        Python::attach(|py| py.detach(move || drop(v)));
    }
}

/// `parse_size(text)`: the core's size rules (`"64MB"`, `"1.5 GiB"`, `"512k"`, `"1024"`: binary
/// units, as memcached's `-m`), so the Python config keeps no copy. Raises ValueError.
#[pyfunction]
fn parse_size(text: &str) -> PyResult<u64> {
    crate::cache::parse_size(text).map_err(pyo3::exceptions::PyValueError::new_err)
}

/// Free-threaded CPython is not declared (`gil_used = true`) until it is tested.
#[pymodule(gil_used = true)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The core's log records (L2 errors, warm-up progress) go to Python's `logging`, under the
    // logger "ratmemcache._core". A host that installed its own `log` backend keeps it.
    let _ = pyo3_log::try_init();
    m.add_class::<cache::PyCache>()?;
    m.add_class::<clock::PyManualClock>()?;
    m.add_class::<objects::PyObjectCache>()?;
    m.add_class::<cached::PyCachedFunction>()?;
    m.add_class::<single_flight::PySingleFlight>()?;
    m.add_class::<server::PyEngine>()?;
    m.add_class::<server::PySession>()?;
    m.add_class::<native::PyNativeServer>()?;
    m.add("FLAG_SERIALIZED", cache::FLAG_SERIALIZED)?;
    m.add("ENTRY_OVERHEAD", crate::cache::ENTRY_OVERHEAD)?;
    m.add("LATENCY_BUCKET_BOUNDS_NS", server::latency_bounds())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(parse_size, m)?)?;
    m.add(
        "DEFAULT_LARGE_VALUE_THRESHOLD",
        crate::tiered::DEFAULT_LARGE_VALUE_THRESHOLD,
    )?;
    m.add(
        "DEFAULT_L2_FILE_THRESHOLD",
        crate::store::DEFAULT_FILE_THRESHOLD,
    )?;
    // Every accepted eviction spelling (normalized) -> its canonical name.
    let aliases = pyo3::types::PyDict::new(m.py());
    for &(spelling, kind) in &crate::cache::PolicyKind::SPELLINGS {
        aliases.set_item(spelling, kind.name())?;
    }
    m.add("POLICY_ALIASES", aliases)?;
    m.add(
        "POLICIES",
        crate::cache::PolicyKind::ALL
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>(),
    )?;
    Ok(())
}
