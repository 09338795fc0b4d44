//! `ratmemcache._core.NativeServer`: the native I/O engine (`net`) for Python.
//!
//! Python resolves the listening addresses, builds the `Engine`, handles signals and logs the
//! events the server queues; every blocking call here releases the GIL, and waits in short
//! slices so that Ctrl-C still reaches the main thread.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use super::server::PyEngine;
use crate::net::{NativeServer, NetConfig, Tls, UnixBindError};

/// How long a blocking call waits with the GIL released before it checks for signals.
const SLICE: Duration = Duration::from_millis(100);

#[pyclass(module = "ratmemcache._core", name = "NativeServer", frozen)]
pub(crate) struct PyNativeServer {
    server: Arc<NativeServer>,
}

/// `OSError(errno, strerror[, filename])`, so Python sets `.errno` (and picks the subclass); a
/// unix socket failure carries the socket's path as `.filename`.
fn os_error(e: std::io::Error) -> PyErr {
    let (source, path) = match e.get_ref().and_then(|r| r.downcast_ref::<UnixBindError>()) {
        Some(u) => (&u.source, Some(u.path.clone())),
        None => (&e, None),
    };
    let Some(code) = source.raw_os_error() else {
        return PyOSError::new_err(e.to_string());
    };
    let text = std::io::Error::from_raw_os_error(code).to_string();
    let strerror = text.split(" (os error").next().unwrap_or(&text).to_string();
    match path {
        Some(path) => PyOSError::new_err((code, strerror, path)),
        None => PyOSError::new_err((code, strerror)),
    }
}

fn duration(seconds: Option<f64>, what: &str) -> PyResult<Option<Duration>> {
    match seconds {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(PyValueError::new_err(format!(
            "{what} must be a non-negative number of seconds, got {s}"
        ))),
    }
}

/// Runs `step(slice)` with the GIL released until it returns `Some`, or `timeout` passes
/// (then `None`), checking for signals between slices.
fn sliced<T: Send>(
    py: Python<'_>,
    timeout: Option<Duration>,
    step: impl Fn(Duration) -> Option<T> + Sync,
) -> PyResult<Option<T>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let slice = match deadline {
            None => SLICE,
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
        };
        if let Some(v) = py.detach(|| step(slice)) {
            return Ok(Some(v));
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
    }
}

#[pymethods]
impl PyNativeServer {
    /// Opens the listeners (raises `OSError` with the errno if one can't be opened). `hosts` are
    /// IP literals, already resolved; they all share the port (port 0 picks one).
    #[new]
    #[pyo3(signature = (hosts, port, *, unix_socket = None, backlog = 1024, worker_threads = 4,
                        max_connections = 1024, idle_timeout = 0.0, read_size = 65536,
                        audit = false, exchanges = false, ssl_chain_cert = None,
                        ssl_key = None, udp_port = None, unix_socket_mask = 0o700))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        hosts: Vec<String>,
        port: u16,
        unix_socket: Option<PathBuf>,
        backlog: u32,
        worker_threads: usize,
        max_connections: usize,
        idle_timeout: f64,
        read_size: usize,
        audit: bool,
        exchanges: bool,
        ssl_chain_cert: Option<PathBuf>,
        ssl_key: Option<PathBuf>,
        udp_port: Option<u16>,
        unix_socket_mask: u32,
    ) -> PyResult<Self> {
        let mut tcp = Vec::with_capacity(hosts.len());
        let mut udp = Vec::new();
        for h in &hosts {
            let ip: IpAddr = h.parse().map_err(|_| {
                PyValueError::new_err(format!("{h:?} is not an IP address (resolve it first)"))
            })?;
            tcp.push(SocketAddr::new(ip, port));
            if let Some(p) = udp_port {
                udp.push(SocketAddr::new(ip, p));
            }
        }
        if unix_socket_mask > 0o777 {
            return Err(PyValueError::new_err(format!(
                "unix_socket_mask must be at most 0o777, got {unix_socket_mask:#o}"
            )));
        }
        if worker_threads == 0 || max_connections == 0 || read_size < 1024 {
            return Err(PyValueError::new_err(
                "worker_threads and max_connections must be at least 1, read_size at least 1024",
            ));
        }
        let idle = duration(Some(idle_timeout), "idle_timeout")?.filter(|d| !d.is_zero());
        let tls = match &ssl_chain_cert {
            None if ssl_key.is_some() => {
                return Err(PyValueError::new_err("ssl_key needs ssl_chain_cert"));
            }
            None => None,
            Some(cert) => Some(
                py.detach(|| Tls::load(cert, ssl_key.as_deref()))
                    .map_err(PyValueError::new_err)?,
            ),
        };
        let config = NetConfig {
            tcp,
            udp,
            unix_socket,
            unix_socket_mask,
            backlog,
            worker_threads,
            max_connections,
            idle_timeout: idle,
            read_size,
            audit,
            exchanges,
            tls,
        };
        let server = py.detach(|| NativeServer::bind(config)).map_err(os_error)?;
        Ok(PyNativeServer {
            server: Arc::new(server),
        })
    }

    /// `(host, port)` of every TCP listener.
    #[getter]
    fn addresses(&self) -> Vec<(String, u16)> {
        self.server
            .local_addrs()
            .iter()
            .map(|a| (a.ip().to_string(), a.port()))
            .collect()
    }

    /// The TCP port bound (0 with only a unix socket).
    #[getter]
    fn port(&self) -> u16 {
        self.server.local_addrs().first().map_or(0, |a| a.port())
    }

    /// `(host, port)` of every UDP socket.
    #[getter]
    fn udp_addresses(&self) -> Vec<(String, u16)> {
        self.server
            .udp_addrs()
            .iter()
            .map(|a| (a.ip().to_string(), a.port()))
            .collect()
    }

    /// Starts serving `engine` (with its `-B`/`-R` session settings); returns the TCP port.
    fn start(&self, engine: PyRef<'_, PyEngine>) -> PyResult<u16> {
        self.server
            .start_with(engine.engine.clone(), engine.session)
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Blocks until a stop has begun (the `shutdown` command, or `begin_stop`); returns why, or
    /// None after `timeout` seconds.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<String>> {
        let timeout = duration(timeout, "timeout")?;
        let server = &self.server;
        sliced(py, timeout, |slice| server.wait(Some(slice)))
    }

    /// Stops accepting; idle connections close now, busy ones after their request.
    #[pyo3(signature = (reason = "stop"))]
    fn begin_stop(&self, reason: &str) {
        self.server.begin_stop(reason);
    }

    /// Blocks until every connection has closed; False after `timeout` seconds.
    #[pyo3(signature = (timeout = None))]
    fn wait_drained(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = duration(timeout, "timeout")?;
        let server = &self.server;
        let r = sliced(py, timeout, |slice| {
            server.wait_drained(Some(slice)).then_some(())
        })?;
        Ok(r.is_some())
    }

    /// Closes every connection now.
    fn force_stop(&self) {
        self.server.force_stop();
    }

    /// Graceful stop: stop accepting, wait up to `grace` seconds for busy connections, then
    /// close everything. Returns True if nothing had to be cut off.
    #[pyo3(signature = (grace = 5.0))]
    fn stop(&self, py: Python<'_>, grace: f64) -> PyResult<bool> {
        let grace = duration(Some(grace), "grace")?.unwrap_or_default();
        self.server.begin_stop("stop");
        let drained = self.wait_drained(py, Some(grace.as_secs_f64()))?;
        self.close(py);
        Ok(drained)
    }

    /// Shuts the runtime down and removes the unix socket file. Idempotent.
    fn close(&self, py: Python<'_>) {
        let server = &self.server;
        py.detach(|| server.close());
    }

    /// False once a stop has begun.
    #[getter]
    fn is_running(&self) -> bool {
        self.server.is_running()
    }

    /// Open client connections.
    #[getter]
    fn connection_count(&self) -> usize {
        self.server.connection_count()
    }

    /// The queued log events `(level, logger name, message)`, oldest first, and how many were
    /// dropped because nobody collected them in time.
    fn take_events(&self) -> (Vec<(u8, &'static str, String)>, u64) {
        let (events, dropped) = self.server.take_events();
        (
            events
                .into_iter()
                .map(|e| (e.level as u8, e.log.name(), e.message))
                .collect(),
            dropped,
        )
    }
}
