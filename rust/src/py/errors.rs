//! The one place where core errors become Python exceptions.
//!
//! The exception classes live in `ratmemcache/errors.py` (so they can subclass two builtins,
//! e.g. `ConfigError(RatMemCacheError, ValueError)`); they are looked up once and cached.

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::error::CoreError;

fn class(
    py: Python<'_>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
) -> PyResult<Py<PyType>> {
    cell.get_or_try_init(py, || {
        py.import("ratmemcache.errors")?
            .getattr(name)?
            .cast_into::<PyType>()
            .map(Bound::unbind)
            .map_err(PyErr::from)
    })
    .map(|t| t.clone_ref(py))
}

fn raise(py: Python<'_>, cell: &'static PyOnceLock<Py<PyType>>, name: &str, msg: String) -> PyErr {
    match class(py, cell, name) {
        Ok(t) => PyErr::from_type(t.into_bound(py), msg),
        Err(e) => e,
    }
}

static CONFIG_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static CLOSED_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static PERSISTENCE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

pub(crate) fn config_error(msg: impl Into<String>) -> PyErr {
    Python::attach(|py| raise(py, &CONFIG_ERROR, "ConfigError", msg.into()))
}

pub(crate) fn to_py(err: CoreError) -> PyErr {
    match err {
        CoreError::Config(m) => config_error(m),
        CoreError::Closed => {
            Python::attach(|py| raise(py, &CLOSED_ERROR, "CacheClosedError", err.to_string()))
        }
        CoreError::BadKey(m) | CoreError::BadArgument(m) | CoreError::TooLarge(m) => {
            PyValueError::new_err(m)
        }
        CoreError::NonNumeric => PyValueError::new_err(err.to_string()),
        CoreError::Persistence(m) | CoreError::DiskFull(m) | CoreError::Disk(m) => {
            Python::attach(|py| raise(py, &PERSISTENCE_ERROR, "PersistenceError", m))
        }
        // The library never opens a refusing section; this is a bug if it shows.
        CoreError::WouldWait => PyRuntimeError::new_err(err.to_string()),
    }
}

pub(crate) fn type_error(msg: String) -> PyErr {
    PyTypeError::new_err(msg)
}
