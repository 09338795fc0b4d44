//! Python arguments into core values: seconds and TTLs, sizes, and named choices. Each error
//! names the argument and what it accepts.

use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyInt, PyString};

use super::errors::{config_error, to_py, type_error};
use crate::cache::{parse_size, PolicyKind, Ttl, UnknownPolicy};
use crate::error::CoreError;

pub(crate) fn seconds_of(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<f64> {
    // Numbers first: looking up a missing attribute costs an exception.
    if obj.is_instance_of::<PyFloat>() || obj.is_instance_of::<PyInt>() {
        return obj.extract();
    }
    if obj.hasattr("total_seconds")? {
        return obj.call_method0("total_seconds")?.extract();
    }
    obj.extract::<f64>()
        .map_err(|_| type_error(format!("{what} must be a number of seconds or a timedelta")))
}

/// `None` uses the cache's default TTL; 0 means never; a positive number is seconds from now.
pub(crate) fn ttl_of(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Ttl> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(Ttl::Default);
    };
    let s = seconds_of(obj, "ttl")?;
    if !s.is_finite() || s < 0.0 {
        return Err(to_py(CoreError::BadArgument(format!(
            "ttl must be a finite number of seconds >= 0 (0 = never expire), got {s}"
        ))));
    }
    Ok(if s == 0.0 {
        Ttl::Never
    } else {
        Ttl::After(((s * 1000.0).ceil() as u64).max(1))
    })
}

pub(crate) fn duration_ms(obj: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<u64> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(0);
    };
    let s = seconds_of(obj, name)?;
    if !s.is_finite() || s < 0.0 {
        return Err(config_error(format!(
            "{name} must be a number of seconds >= 0, got {s}"
        )));
    }
    Ok((s * 1000.0).round() as u64)
}

pub(crate) fn size_of_arg(
    obj: Option<&Bound<'_, PyAny>>,
    name: &str,
    default: u64,
) -> PyResult<u64> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(default);
    };
    if let Ok(s) = obj.cast::<PyString>() {
        return parse_size(s.to_str()?).map_err(|e| config_error(format!("{name}: {e}")));
    }
    match obj.extract::<i128>() {
        Ok(n) if (0..=u64::MAX as i128).contains(&n) => Ok(n as u64),
        Ok(n) => Err(config_error(format!("{name} must be >= 0, got {n}"))),
        Err(_) => Err(type_error(format!(
            "{name} must be an int or a size string such as \"64MB\", not {}",
            obj.get_type().name()?
        ))),
    }
}

/// One of a fixed set of spellings, or a ConfigError that lists them.
pub(crate) fn choice<T: Copy>(name: &str, value: &str, options: &[(&str, T)]) -> PyResult<T> {
    match options.iter().find(|(k, _)| *k == value) {
        Some((_, v)) => Ok(*v),
        None => {
            let names: Vec<String> = options.iter().map(|(k, _)| format!("{k:?}")).collect();
            Err(config_error(format!(
                "{name} must be one of {}, got {value:?}",
                names.join(", ")
            )))
        }
    }
}

/// An eviction policy by name (any case, or the original RatMemCache's names).
pub(crate) fn eviction_of(name: &str) -> PyResult<PolicyKind> {
    name.parse()
        .map_err(|e: UnknownPolicy| config_error(format!("eviction: {e}")))
}
