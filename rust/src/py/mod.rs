//! The Python extension `ratmemcache._core`: the only code that imports pyo3.

mod cache;
mod clock;
mod errors;
mod native;
mod server;

use pyo3::prelude::*;

/// Free-threaded CPython is not declared (`gil_used = true`) until it is tested.
#[pymodule(gil_used = true)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<cache::PyCache>()?;
    m.add_class::<clock::PyManualClock>()?;
    m.add_class::<server::PyEngine>()?;
    m.add_class::<server::PySession>()?;
    m.add_class::<native::PyNativeServer>()?;
    m.add("FLAG_SERIALIZED", cache::FLAG_SERIALIZED)?;
    m.add("ENTRY_OVERHEAD", crate::cache::ENTRY_OVERHEAD)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add(
        "POLICIES",
        crate::cache::PolicyKind::ALL
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>(),
    )?;
    Ok(())
}
