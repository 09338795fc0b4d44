//! `ratmemcache.ManualClock`: a clock that moves only when a test tells it to.

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::cache::{Clock, ManualClock, SystemClock};

#[pyclass(module = "ratmemcache._core", name = "ManualClock", frozen)]
pub(crate) struct PyManualClock {
    pub(crate) clock: Arc<ManualClock>,
}

fn to_ms(seconds: f64) -> PyResult<u64> {
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(PyValueError::new_err(format!(
            "seconds must be a finite number >= 0, got {seconds}"
        )));
    }
    Ok((seconds * 1000.0).round() as u64)
}

impl PyManualClock {
    /// The clock a cache runs on: this one if given, else the system's.
    pub(crate) fn or_system(clock: Option<PyRef<'_, PyManualClock>>) -> Arc<dyn Clock> {
        match clock {
            Some(c) => c.clock.clone(),
            None => Arc::new(SystemClock),
        }
    }
}

#[pymethods]
impl PyManualClock {
    /// `start` is a unix time in seconds.
    #[new]
    #[pyo3(signature = (start = 1_700_000_000.0))]
    fn new(start: f64) -> PyResult<Self> {
        Ok(PyManualClock {
            clock: Arc::new(ManualClock::new(to_ms(start)?)),
        })
    }

    /// Moves the clock forward by `seconds`.
    fn advance(&self, seconds: f64) -> PyResult<()> {
        self.clock.advance(to_ms(seconds)?);
        Ok(())
    }

    /// Sets the clock to the unix time `seconds`.
    fn set(&self, seconds: f64) -> PyResult<()> {
        self.clock.set(to_ms(seconds)?);
        Ok(())
    }

    /// The current time, in unix seconds.
    fn now(&self) -> f64 {
        self.clock.now_ms() as f64 / 1000.0
    }

    fn __repr__(&self) -> String {
        format!("ManualClock({})", self.now())
    }
}
