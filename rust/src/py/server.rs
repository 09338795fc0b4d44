//! `ratmemcache._core.Engine` and `Session`: the protocol engine for the Python I/O layer.
//!
//! Python only moves bytes: each read is handed to `Session.feed`, whose reply is written back in
//! one send. Large inputs are parsed with the GIL released, so an asyncio server can run them in
//! a worker thread while the event loop keeps serving other clients.

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::cache::PyCache;
use crate::engine::{Engine, EngineConfig, DEFAULT_MAX_ITEM_SIZE, MAX_ITEM_SIZE_LIMIT};
use crate::protocol::limits::LARGE_FEED;
use crate::protocol::Session;

// The signature below spells the default as a literal so Python's introspection shows it.
const _: () = assert!(DEFAULT_MAX_ITEM_SIZE == 1048576);

#[pyclass(module = "ratmemcache._core", name = "Engine", frozen)]
pub(crate) struct PyEngine {
    pub(super) engine: Arc<Engine>,
}

#[pymethods]
impl PyEngine {
    #[new]
    #[pyo3(signature = (cache, *, max_item_size = 1048576, allow_flush = true,
                        allow_shutdown = false, allow_verbosity = true, settings = None))]
    fn new(
        cache: PyRef<'_, PyCache>,
        max_item_size: usize,
        allow_flush: bool,
        allow_shutdown: bool,
        allow_verbosity: bool,
        settings: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        if !(1024..=MAX_ITEM_SIZE_LIMIT).contains(&max_item_size) {
            return Err(super::errors::config_error(format!(
                "max_item_size must be between 1KB and 1GB, got {max_item_size}"
            )));
        }
        let mut pairs = Vec::new();
        if let Some(d) = settings {
            for (k, v) in d.iter() {
                pairs.push((k.str()?.to_string(), v.str()?.to_string()));
            }
        }
        let config = EngineConfig {
            max_item_size,
            allow_flush,
            allow_shutdown,
            allow_verbosity,
            settings: pairs,
        };
        Ok(PyEngine {
            engine: Arc::new(Engine::new(cache.core.clone(), config)),
        })
    }

    /// A new connection's protocol state.
    fn session(&self) -> PySession {
        PySession {
            session: Session::new(self.engine.clone()),
            out: Vec::new(),
        }
    }

    /// Counts a connection refused by `max_connections`.
    fn connection_rejected(&self) {
        self.engine.connection_rejected();
    }

    #[getter]
    fn shutdown_requested(&self) -> bool {
        self.engine.shutdown_requested()
    }

    #[getter]
    fn verbosity(&self) -> u32 {
        self.engine.verbosity()
    }

    #[getter]
    fn max_item_size(&self) -> usize {
        self.engine.config().max_item_size
    }

    /// The general `stats` fields, with memcached's names.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in self.engine.general_stats() {
            d.set_item(k, v)?;
        }
        Ok(d)
    }
}

#[pyclass(module = "ratmemcache._core", name = "Session")]
pub(crate) struct PySession {
    session: Session,
    out: Vec<u8>,
}

#[pymethods]
impl PySession {
    /// Parses and answers every complete request; returns the reply bytes and whether to close.
    fn feed<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<(Bound<'py, PyBytes>, bool)> {
        if self.session.is_closed() {
            return Err(PyValueError::new_err("feed() on a closed session"));
        }
        self.out.clear();
        let (session, out) = (&mut self.session, &mut self.out);
        let close = if data.len() >= LARGE_FEED || session.buffered() >= LARGE_FEED {
            py.detach(|| session.feed(data, out))
        } else {
            session.feed(data, out)
        };
        let reply = PyBytes::new(py, &self.out);
        if self.out.capacity() > 1 << 20 {
            self.out = Vec::new();
        }
        Ok((reply, close))
    }

    /// Bytes received but not yet answered (an incomplete request or value).
    #[getter]
    fn buffered(&self) -> usize {
        self.session.buffered()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.session.is_closed()
    }

    /// The connection is gone. Idempotent.
    fn close(&mut self) {
        self.session.close();
    }
}
