//! Values over `[l2] file_threshold`, each in a file of its own under `<data_dir>/values/`.
//!
//! redb puts a value in pages of a power-of-two size and copies it twice on a read; a file of
//! its own is read straight into the buffer that becomes the value, as diskcache and memcached's
//! extstore keep large values outside their index. The record in redb keeps the header, the
//! file's id and the value's CRC-32 (`record::FileRef`).
//!
//! The crash argument, step by step:
//! 1. A put writes `<id>.tmp`, (with `sync = "always"`) fsyncs it, renames it to `<id>.val` and
//!    fsyncs the directory, all before the record that names it is queued. Ids only grow, so a
//!    rename never replaces a file and no reader ever sees a half-written `.val`.
//! 2. The record commits after the file is in place; a set is acknowledged (with
//!    `sync = "always"`) only after that commit is durable. A crash before the commit leaves a
//!    file that no record names: an orphan, removed at the next start and counted.
//! 3. A file is removed only after the commit that dropped its record (overwrite, delete,
//!    eviction, expiry, `flush_all`), so a committed record never names a removed file.
//! 4. With `sync = "periodic"` or `"never"`, a power cut can keep a record whose file lost its
//!    data: the CRC check on every read turns that into a miss (logged and counted), never a
//!    torn value.
//!
//! A read maps the file instead of copying it: the value is a `Bytes` over the mapping, so the
//! server writes it to the socket straight from the page cache (one copy, the kernel's, as
//! memcached's extstore and `sendfile` do), and the library copies it once into the `bytes` it
//! returns. Files are never written after their rename, only unlinked, and an unlinked file
//! stays mapped until its last reader lets go.
#![allow(unsafe_code)] // one mmap, see its SAFETY comment

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use memmap2::Mmap;

use crate::store::record::FileRef;

/// The directory under `data_dir` that holds the value files.
pub const VALUES_DIR: &str = "values";
const EXT: &str = "val";
const TMP_EXT: &str = "tmp";

/// Why a value file could not be served.
#[derive(Debug)]
pub(super) enum FileFault {
    /// Gone (removed by hand, or lost to a crash).
    Missing,
    /// Its length or checksum is not the record's.
    Corrupt(String),
    /// Reading it failed.
    Io(io::Error),
}

impl std::fmt::Display for FileFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileFault::Missing => f.write_str("the file is missing"),
            FileFault::Corrupt(why) => write!(f, "the file is corrupt ({why})"),
            FileFault::Io(e) => write!(f, "reading it failed ({e})"),
        }
    }
}

/// The value files of one L2.
pub(super) struct ValueFiles {
    dir: PathBuf,
    next_id: AtomicU64,
}

impl ValueFiles {
    /// Opens (creates) `data_dir/values`; removes the temporary files a crash left, and every
    /// file when `clear`.
    pub(super) fn open(data_dir: &Path, clear: bool) -> io::Result<ValueFiles> {
        let dir = data_dir.join(VALUES_DIR);
        fs::create_dir_all(&dir)?;
        let mut max_id = 0;
        for (path, id, tmp) in list(&dir)? {
            if tmp || clear {
                remove(&path)?;
            } else {
                max_id = max_id.max(id);
            }
        }
        Ok(ValueFiles {
            dir,
            next_id: AtomicU64::new(max_id + 1),
        })
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: u64, ext: &str) -> PathBuf {
        self.dir.join(format!("{id:016x}.{ext}"))
    }

    /// Whether the directory holds any value file (a store that never had a large value skips
    /// the orphan scan at startup).
    pub(super) fn any(&self) -> io::Result<bool> {
        Ok(list(&self.dir)?.next().is_some())
    }

    /// Writes `value` to a new file; `durable` fsyncs it and the directory before returning.
    pub(super) fn write(&self, value: &[u8], durable: bool) -> io::Result<FileRef> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tmp = self.path(id, TMP_EXT);
        let written = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(value)?;
            if durable {
                f.sync_all()?;
            }
            drop(f);
            fs::rename(&tmp, self.path(id, EXT))?;
            if durable {
                sync_dir(&self.dir)?;
            }
            Ok(())
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(FileRef {
            id,
            crc: crc32fast::hash(value),
        })
    }

    /// The value of `file`, `len` bytes, mapped and checked.
    pub(super) fn read(&self, file: FileRef, len: u32) -> Result<Bytes, FileFault> {
        let f = match File::open(self.path(file.id, EXT)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(FileFault::Missing),
            Err(e) => return Err(FileFault::Io(e)),
        };
        let size = f.metadata().map_err(FileFault::Io)?.len();
        if size != u64::from(len) {
            return Err(FileFault::Corrupt(format!(
                "{size} bytes where the record says {len}"
            )));
        }
        if len == 0 {
            return Ok(Bytes::new()); // nothing to map
        }
        // SAFETY: the mapping is read-only and private to this value. A value file is never
        // written after the rename that published it (ids only grow, so nothing reopens it for
        // writing), and removing it only unlinks it: the mapped pages stay valid until the
        // last `Bytes` over them is dropped. Truncating a value file by hand while the server
        // runs is outside that contract (as for redb's own file).
        let map = unsafe { Mmap::map(&f) }.map_err(FileFault::Io)?;
        if map.len() != len as usize {
            return Err(FileFault::Corrupt(format!(
                "{} bytes mapped where the record says {len}",
                map.len()
            )));
        }
        if crc32fast::hash(&map) != file.crc {
            return Err(FileFault::Corrupt("checksum mismatch".into()));
        }
        Ok(Bytes::from_owner(map))
    }

    /// The path of a value's file, for messages.
    pub(super) fn describe(&self, file: FileRef) -> String {
        self.path(file.id, EXT).display().to_string()
    }

    /// Removes the files of records that are gone (a missing one is fine).
    pub(super) fn remove_all(&self, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            let path = self.path(id, EXT);
            if let Err(e) = remove(&path) {
                log::warn!("cannot remove the L2 value file {}: {e}", path.display());
            }
        }
    }

    /// Removes every value file whose id is not in `live`, except files written from `from_id`
    /// on (their records may still be on their way); returns how many it removed.
    pub(super) fn remove_orphans(&self, live: &HashSet<u64>, from_id: u64) -> io::Result<u64> {
        let mut removed = 0;
        for (path, id, _) in list(&self.dir)? {
            if id < from_id && !live.contains(&id) {
                remove(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The id the next file will get: files from it on were written after this call.
    pub(super) fn next_id(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed)
    }
}

/// The value and temporary files in `dir`: (path, id, temporary). Other names are left alone.
fn list(dir: &Path) -> io::Result<impl Iterator<Item = (PathBuf, u64, bool)>> {
    Ok(fs::read_dir(dir)?.filter_map(|e| {
        let path = e.ok()?.path();
        let ext = path.extension()?.to_str()?;
        let tmp = match ext {
            EXT => false,
            TMP_EXT => true,
            _ => return None,
        };
        let id = u64::from_str_radix(path.file_stem()?.to_str()?, 16).ok()?;
        Some((path, id, tmp))
    }))
}

fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Makes a rename in `dir` durable. Windows has no directory fsync (NTFS journals the rename).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}
