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
use crate::latency::{latency_bucket_bound_ns, LATENCY_BUCKETS};
use crate::protocol::limits::LARGE_FEED;
use crate::protocol::{udp, Binding, Credentials, Session, SessionConfig};

// The signature below spells the default as a literal so Python's introspection shows it.
const _: () = assert!(DEFAULT_MAX_ITEM_SIZE == 1048576);

#[pyclass(module = "ratmemcache._core", name = "Engine", frozen)]
pub(crate) struct PyEngine {
    pub(super) engine: super::Released<Arc<Engine>>,
    /// memcached's `-B` and `-R`, for every session of this engine (both I/O engines).
    pub(super) session: SessionConfig,
}

/// memcached's `-B` names.
fn binding(name: &str) -> PyResult<Binding> {
    match name {
        "auto" => Ok(Binding::Auto),
        "ascii" => Ok(Binding::Ascii),
        "binary" => Ok(Binding::Binary),
        other => Err(super::errors::config_error(format!(
            "binding_protocol must be auto, ascii or binary, got {other:?}"
        ))),
    }
}

#[pymethods]
impl PyEngine {
    #[new]
    #[pyo3(signature = (cache, *, max_item_size = 1048576, allow_flush = true,
                        allow_shutdown = false, allow_verbosity = true,
                        prefix_delimiter = ":", settings = None, auth = None, sasl = None,
                        binding_protocol = "auto", reqs_per_event = 0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        cache: PyRef<'_, PyCache>,
        max_item_size: usize,
        allow_flush: bool,
        allow_shutdown: bool,
        allow_verbosity: bool,
        prefix_delimiter: &str,
        settings: Option<&Bound<'_, PyDict>>,
        auth: Option<Vec<(Vec<u8>, Vec<u8>)>>,
        sasl: Option<Vec<(Vec<u8>, Vec<u8>)>>,
        binding_protocol: &str,
        reqs_per_event: usize,
    ) -> PyResult<Self> {
        // 0: no request budget (a library session answers everything it is fed); the server's
        // config gives memcached's -R (20 by default).
        let session = SessionConfig {
            binding: binding(binding_protocol)?,
            reqs_per_event,
        };
        if !(1024..=MAX_ITEM_SIZE_LIMIT).contains(&max_item_size) {
            return Err(super::errors::config_error(format!(
                "max_item_size must be between 1KB and 1GB, got {max_item_size}"
            )));
        }
        let &[prefix_delimiter] = prefix_delimiter.as_bytes() else {
            return Err(super::errors::config_error(format!(
                "prefix_delimiter must be one ASCII character, got {prefix_delimiter:?}"
            )));
        };
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
            // Only the test suite sets this, to check how a panicking command is contained.
            test_hooks: std::env::var_os("RATMEMCACHE_TEST_HOOKS").is_some_and(|v| v == "1"),
            auth: auth.map(|users| Arc::new(Credentials::new(users))),
            sasl: sasl.map(|users| Arc::new(Credentials::new(users))),
            // On unless RATMEMCACHE_LATENCY_HISTOGRAMS=0, which exists to measure what they cost.
            latency_histograms: std::env::var_os("RATMEMCACHE_LATENCY_HISTOGRAMS")
                .is_none_or(|v| v != "0"),
            prefix_delimiter,
        };
        Ok(PyEngine {
            engine: super::Released::new(Arc::new(Engine::new(Arc::clone(&cache.core), config))),
            session,
        })
    }

    /// A new connection's protocol state. With `hands_off_waits`, a feed stops at a request
    /// that must wait on the disk (an L1 miss with the L2 on, a write that goes down at once):
    /// `must_wait` is then set, and the next `feed(b"")` should run in a worker thread. Without
    /// it, every feed may wait.
    #[pyo3(signature = (*, hands_off_waits = false))]
    fn session(&self, hands_off_waits: bool) -> PySession {
        let mut session = Session::with_config(Arc::clone(&self.engine), self.session);
        session.set_hands_off_waits(hands_off_waits);
        PySession {
            session: super::Released::new(session),
            out: Vec::new(),
        }
    }

    /// Serves one UDP request datagram (memcached's frame header included); returns the reply
    /// datagrams, in order (none for a datagram memcached ignores).
    fn serve_datagram<'py>(&self, py: Python<'py>, datagram: &[u8]) -> Vec<Bound<'py, PyBytes>> {
        let (engine, session) = (&self.engine, self.session);
        let serve = || udp::serve(engine, session, datagram);
        let replies = if engine.may_block() {
            py.detach(serve)
        } else {
            serve()
        };
        replies.iter().map(|d| PyBytes::new(py, d)).collect()
    }

    /// Counts a connection refused by `max_connections`.
    fn connection_rejected(&self) {
        self.engine.connection_rejected();
    }

    /// Counts a pause in accepting connections of `seconds` (memcached's
    /// `listen_disabled_num` and `time_in_listen_disabled_us`).
    fn listen_disabled(&self, seconds: f64) {
        self.engine
            .accept_paused(std::time::Duration::from_secs_f64(seconds.max(0.0)));
    }

    /// memcached's `-B`: "auto", "ascii" or "binary".
    #[getter]
    fn binding_protocol(&self) -> &'static str {
        match self.session.binding {
            Binding::Auto => "auto",
            Binding::Ascii => "ascii",
            Binding::Binary => "binary",
        }
    }

    /// memcached's `-R` (0: no limit).
    #[getter]
    fn reqs_per_event(&self) -> usize {
        self.session.reqs_per_event
    }

    #[getter]
    fn shutdown_requested(&self) -> bool {
        self.engine.shutdown_requested()
    }

    /// Commands may wait on the disk (the L2 is on): a session's feeds may block (see
    /// `session(hands_off_waits=...)`), and so may `serve_datagram`.
    #[getter]
    fn may_block(&self) -> bool {
        self.engine.may_block()
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

    /// The latency histograms, by kind of command: `{kind: (counts, sum_ns)}`, where
    /// `counts[i]` (not cumulative) is the number of commands that took at most
    /// `LATENCY_BUCKET_BOUNDS_NS[i]` ns and more than the bound before it; the last count is
    /// those slower than every bound.
    fn latency<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (kind, h) in self.engine.latency_snapshot() {
            d.set_item(kind.name(), (h.counts.to_vec(), h.sum_ns))?;
        }
        Ok(d)
    }
}

/// The upper bounds, in nanoseconds, of every latency bucket but the last (unbounded) one.
pub(crate) fn latency_bounds() -> Vec<u64> {
    (0..LATENCY_BUCKETS)
        .filter_map(latency_bucket_bound_ns)
        .collect()
}

#[pyclass(module = "ratmemcache._core", name = "Session")]
pub(crate) struct PySession {
    session: super::Released<Session>,
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
        // A feed that may wait on the disk, or that handles a large value, lets other Python
        // threads run meanwhile.
        let offload = data.len() >= LARGE_FEED
            || session.buffered() >= LARGE_FEED
            || (session.engine().may_block() && !session.hands_off_waits())
            || session.must_wait();
        // A panic is a bug in one command: it must cost only this connection. The session may
        // be mid-request, so it is closed after a last reply.
        let mut guarded =
            || std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.feed(data, out)));
        let result = if offload {
            py.detach(guarded)
        } else {
            guarded()
        };
        let close = match result {
            Ok(close) => close,
            Err(_) => {
                log::error!("a command panicked; closing that connection (a bug: please report)");
                session.close();
                out.extend_from_slice(b"SERVER_ERROR internal error\r\n");
                true
            }
        };
        let reply = PyBytes::new(py, &self.out);
        if self.out.capacity() > 1 << 20 {
            self.out = Vec::new();
        }
        Ok((reply, close))
    }

    /// The last `feed` stopped at the reply budget: send its reply, then `feed(b"")` again
    /// before reading more (backpressure for clients that pipeline without reading).
    #[getter]
    fn has_more(&self) -> bool {
        self.session.has_more()
    }

    /// The last `feed` stopped at a request that must wait on the disk (a session made with
    /// `hands_off_waits`): send its reply, then `feed(b"")` again in a worker thread, before
    /// reading more. `has_more` is also set.
    #[getter]
    fn must_wait(&self) -> bool {
        self.session.must_wait()
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
