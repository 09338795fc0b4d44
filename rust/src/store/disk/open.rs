//! Opening the L2's database file: the checks before it (a writable directory), redb's
//! integrity check with its progress logged, and what a file that can't be opened becomes (an
//! error naming the path and what to do, or a corrupt file moved aside).

use std::io;
use std::path::{Path, PathBuf};

use redb::{Database, DatabaseError, StorageError};

use crate::error::CoreError;

pub(super) fn check_writable(dir: &Path) -> Result<(), CoreError> {
    let probe = dir.join(".ratmemcache-write-test");
    std::fs::write(&probe, b"ok")
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| {
            CoreError::Persistence(format!(
                "the L2 data dir {} is not writable ({e}); fix its permissions, or set [l2] \
                 data_dir to a writable directory",
                dir.display()
            ))
        })
}

/// Why the file could not be opened.
pub(super) enum Opened {
    Locked,
    Corrupt(String),
    Other(String),
}

impl Opened {
    pub(super) fn into_error(self, path: &Path) -> CoreError {
        CoreError::Persistence(match self {
            Opened::Locked => format!(
                "the L2 file {} is locked by another process (another ratmemcached with the same \
                 data_dir?); stop it, or set [l2] data_dir to another directory",
                path.display()
            ),
            Opened::Corrupt(why) => format!(
                "the L2 file {} is corrupt ({why}); move it aside, or set [l2] on_corruption = \
                 \"reset\" to have it moved aside and start empty",
                path.display()
            ),
            Opened::Other(why) => format!("cannot open the L2 file {}: {why}", path.display()),
        })
    }
}

/// How often a long integrity check at open reports its progress.
pub(super) const OPEN_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

pub(super) fn open_db(path: &Path, page_cache: usize) -> Result<Database, Opened> {
    // The integrity check turns a file damaged outside redb into an error instead of a panic
    // deep in a later read; it reads the whole file once at startup. A panic is still caught,
    // as a last line of defence. On a large file that takes a while: it logs its progress
    // every OPEN_LOG_EVERY.
    let shown = path.display().to_string();
    let next_log = std::cell::Cell::new(std::time::Instant::now() + OPEN_LOG_EVERY);
    let opened = std::panic::catch_unwind(|| {
        Database::builder()
            .set_cache_size(page_cache)
            .set_check_integrity_on_open(true)
            .set_repair_callback(move |session| {
                let now = std::time::Instant::now();
                if now >= next_log.get() {
                    next_log.set(now + OPEN_LOG_EVERY);
                    log::info!(
                        "checking the L2 file {shown}: {:.0}%",
                        session.progress() * 100.0
                    );
                }
            })
            .create(path)
    });
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(DatabaseError::DatabaseAlreadyOpen)) => Err(Opened::Locked),
        Ok(Err(DatabaseError::Storage(StorageError::Io(e))))
            if e.kind() == io::ErrorKind::InvalidData
                || e.kind() == io::ErrorKind::UnexpectedEof =>
        {
            Err(Opened::Corrupt(e.to_string()))
        }
        Ok(Err(DatabaseError::Storage(StorageError::Io(e)))) => Err(Opened::Other(e.to_string())),
        Ok(Err(
            e @ (DatabaseError::Storage(StorageError::Corrupted(_))
            | DatabaseError::RepairAborted
            | DatabaseError::UpgradeRequired(_)),
        )) => Err(Opened::Corrupt(e.to_string())),
        Ok(Err(e)) => Err(Opened::Other(e.to_string())),
        Err(_) => Err(Opened::Corrupt("redb failed reading it".into())),
    }
}

pub(super) fn move_aside(path: &Path) -> Result<PathBuf, CoreError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{secs}"));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside).map_err(|e| {
        CoreError::Persistence(format!(
            "the L2 file {} is corrupt and could not be moved aside to {}: {e}; move it by hand",
            path.display(),
            aside.display()
        ))
    })?;
    Ok(aside)
}
