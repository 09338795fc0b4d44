//! The L2 on disk: one redb file, written by one writer thread that commits in groups.
//!
//! Writers never touch redb themselves. A write (a put or a delete of one key) goes into the
//! `pending` map and, when the sync policy asks for it, waits until the batch holding it is
//! committed. The writer thread swaps `pending` out as `committing`, applies it in one write
//! transaction and commits; writes that arrive meanwhile gather in the next batch, so with
//! `sync = "always"` a hundred concurrent clients share one fsync instead of queueing for a
//! hundred. Readers look in `pending`, then `committing`, then the file, so a write is visible
//! to every reader the moment it is queued.
//!
//! Each record is indexed twice, by write time (`by_age`: the order L2 evicts in when it is over
//! `max_disk_size`, and the reverse of the warm-up order) and by deadline (`by_expiry`: the
//! background sweep deletes expired records without scanning the rest).
//!
//! A failed commit (a full disk, say) puts its batch back in front of newer writes and is
//! retried with a back-off; until one succeeds, writes that wait are answered with the error and
//! writes that don't are refused, so nothing is acknowledged that can't be kept. redb asks to be
//! reopened after an I/O error, which the writer does before its next attempt.
//!
//! Values over `file_threshold` live in files of their own ([`files`]); the record keeps their
//! id and checksum, and a file is removed only after the commit that dropped its record.

mod files;
mod open;
mod writer;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, StorageError,
    TableDefinition,
};

use super::record::{self, Body, Compression, FileRef, Header};
use crate::cache::Clock;
use crate::error::CoreError;
pub use files::VALUES_DIR;
use files::{FileFault, ValueFiles};
use open::{check_writable, move_aside, open_db, Opened, OPEN_LOG_EVERY};

/// The database file inside `data_dir`.
pub const FILE_NAME: &str = "ratmemcache-l2.redb";

const ITEMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("items");
const BY_AGE: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("by_age");
const BY_EXPIRY: TableDefinition<(u64, &[u8]), ()> = TableDefinition::new("by_expiry");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Bytes charged per record besides its key and encoded record: two index keys (a u64 and the
/// key again) and redb's per-entry bookkeeping, roughly.
const RECORD_OVERHEAD: u64 = 48;
/// Queued bytes past which writers wait for the writer thread (backpressure).
const MAX_PENDING_BYTES: usize = 64 << 20;
/// Records deleted per transaction by the expiry sweep, so it never holds the writer for long.
const SWEEP_BATCH: usize = 4096;

/// When commits are made durable (fsync).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Every write waits for a durable commit: nothing acknowledged is lost, even to SIGKILL or
    /// a power cut. Concurrent writers share commits.
    Always,
    /// Commits are made durable at least every `sync_interval`: a crash loses at most that much.
    Periodic,
    /// Durable only at a clean shutdown (and at each expiry sweep): fastest, a crash may lose
    /// everything written since.
    Never,
}

/// What to do with an L2 file that fails its integrity check at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnCorruption {
    /// Refuse to start, naming the file.
    Fail,
    /// Move the file aside (`<name>.corrupt-<unix time>`) and start empty.
    Reset,
}

#[derive(Debug, Clone)]
pub struct DiskConfig {
    pub dir: PathBuf,
    /// Budget for records and their indexes (see `RECORD_OVERHEAD`); 0 = unlimited.
    pub max_disk_size: u64,
    pub sync: SyncMode,
    pub sync_interval: Duration,
    pub compression: Compression,
    pub on_corruption: OnCorruption,
    pub clear_on_startup: bool,
    /// How often expired records are deleted; zero turns the sweep off.
    pub cleanup_interval: Duration,
    /// redb's page cache.
    pub page_cache: usize,
    /// Values of this many bytes and more are kept in files of their own (`values/` in `dir`);
    /// 0 keeps every value in redb.
    pub file_threshold: usize,
}

/// The default [`DiskConfig::file_threshold`].
pub const DEFAULT_FILE_THRESHOLD: usize = 64 * 1024;

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            dir: PathBuf::from("ratmemcache-data"),
            max_disk_size: 1 << 30,
            sync: SyncMode::Periodic,
            sync_interval: Duration::from_secs(1),
            compression: Compression::default(),
            on_corruption: OnCorruption::Fail,
            clear_on_startup: false,
            cleanup_interval: Duration::from_secs(60),
            page_cache: 32 << 20,
            file_threshold: DEFAULT_FILE_THRESHOLD,
        }
    }
}

/// Counters for `stats`.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiskStats {
    pub items: u64,
    pub bytes: u64,
    pub file_bytes: u64,
    pub reads: u64,
    pub hits: u64,
    pub writes: u64,
    pub commits: u64,
    pub evictions: u64,
    pub expirations: u64,
    pub errors: u64,
    pub max_cas: u64,
    /// Value files that were missing or failed their checksum (each served as a miss).
    pub file_errors: u64,
    /// Value files that no record named, removed at startup.
    pub orphans_removed: u64,
}

#[derive(Debug, Clone)]
enum Op {
    Put(Arc<[u8]>),
    Delete,
}

impl Op {
    fn size(&self, key: &[u8]) -> usize {
        key.len()
            + match self {
                Op::Put(r) => r.len(),
                Op::Delete => 0,
            }
    }

    /// The value file a put names, if any.
    fn file(&self) -> Option<FileRef> {
        match self {
            Op::Put(r) => record::file_ref(r),
            Op::Delete => None,
        }
    }
}

type Batch = HashMap<Box<[u8]>, Op>;

#[derive(Default)]
struct State {
    pending: Batch,
    committing: Batch,
    /// A `clear` is queued in `pending` / being applied: keys not in the maps are gone.
    clear_pending: bool,
    clear_committing: bool,
    pending_bytes: usize,
    /// The batch now gathering in `pending`; `done` is the last batch finished.
    batch: u64,
    done: u64,
    /// The last failed batches, for writers that wait on them.
    failures: VecDeque<(u64, DiskFailure)>,
    /// Set while commits fail; cleared by the next good one.
    failing: Option<DiskFailure>,
    want_durable: bool,
    /// An expiry sweep was asked for (`sweep_expired`); `sweeps` counts the ones finished.
    sweep_requested: bool,
    sweeps: u64,
    stop: bool,
    /// Value files of puts that were replaced before they were committed: removed after the
    /// next commit (a reader may still hold the put it replaced).
    dead_files: Vec<u64>,
}

impl State {
    fn has_work(&self) -> bool {
        !self.pending.is_empty() || self.clear_pending || self.want_durable
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DiskFailure {
    NoSpace,
    Io,
}

impl DiskFailure {
    fn of(e: &StorageError) -> DiskFailure {
        match e {
            StorageError::Io(io) if is_no_space(io) => DiskFailure::NoSpace,
            _ => DiskFailure::Io,
        }
    }

    fn error(self, path: &Path) -> CoreError {
        match self {
            DiskFailure::NoSpace => CoreError::DiskFull(format!(
                "out of disk space writing {}; free some space (it is retried)",
                path.display()
            )),
            DiskFailure::Io => CoreError::Disk(format!(
                "an I/O error writing {}; see the server log",
                path.display()
            )),
        }
    }
}

/// ENOSPC on POSIX (an errno: on Windows the raw code is a Win32 error, where 28 means something
/// else); everywhere, the kind std maps "disk full" to (on Windows ERROR_DISK_FULL and
/// ERROR_HANDLE_DISK_FULL).
fn is_no_space(e: &io::Error) -> bool {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ENOSPC) {
        return true;
    }
    e.kind() == io::ErrorKind::StorageFull
}

#[derive(Default)]
struct Counters {
    reads: AtomicU64,
    hits: AtomicU64,
    writes: AtomicU64,
    commits: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
    errors: AtomicU64,
    items: AtomicU64,
    bytes: AtomicU64,
    max_cas: AtomicU64,
    file_errors: AtomicU64,
    orphans_removed: AtomicU64,
}

struct Shared {
    path: PathBuf,
    files: ValueFiles,
    cfg: DiskConfig,
    clock: Arc<dyn Clock>,
    db: RwLock<Option<Arc<Database>>>,
    state: Mutex<State>,
    /// Wakes the writer thread.
    work: Condvar,
    /// Wakes writers waiting for a batch.
    finished: Condvar,
    counters: Counters,
    /// Something was committed without an fsync since the last durable commit.
    unsynced: std::sync::atomic::AtomicBool,
    /// When a failed value-file write was last logged (unix ms).
    file_error_logged_ms: AtomicU64,
}

/// The persistent tier. Every method takes `&self`; share it in an `Arc`.
pub struct DiskStore {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// A record read back: its header and raw value (a value file's is a mapping of it).
pub type Loaded = (Header, Bytes);

impl DiskStore {
    /// Opens (or creates) `cfg.dir/FILE_NAME`. Every failure is one line naming the path and
    /// what to do about it.
    pub fn open(cfg: DiskConfig, clock: Arc<dyn Clock>) -> Result<DiskStore, CoreError> {
        let dir = &cfg.dir;
        std::fs::create_dir_all(dir).map_err(|e| {
            CoreError::Persistence(format!(
                "cannot create the L2 data dir {}: {e}; create it, or set [l2] data_dir to a \
                 writable directory",
                dir.display()
            ))
        })?;
        check_writable(dir)?;
        let path = dir.join(FILE_NAME);
        if cfg.clear_on_startup && path.exists() {
            std::fs::remove_file(&path).map_err(|e| {
                CoreError::Persistence(format!(
                    "cannot remove {} for clear_on_startup: {e}",
                    path.display()
                ))
            })?;
        }
        let files = ValueFiles::open(dir, cfg.clear_on_startup).map_err(|e| {
            CoreError::Persistence(format!(
                "cannot open the L2 value files in {}: {e}; fix its permissions, or set [l2] \
                 data_dir to a writable directory",
                dir.join(VALUES_DIR).display()
            ))
        })?;
        let started = std::time::Instant::now();
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        log::debug!("opening the L2 file {} ({size} bytes)", path.display());
        let db = match open_db(&path, cfg.page_cache) {
            Ok(db) => db,
            Err(Opened::Corrupt(why)) if cfg.on_corruption == OnCorruption::Reset => {
                let aside = move_aside(&path)?;
                log::warn!(
                    "the L2 file {} is corrupt ({why}); moved it to {} and started empty \
                     ([l2] on_corruption = \"reset\")",
                    path.display(),
                    aside.display()
                );
                open_db(&path, cfg.page_cache).map_err(|e| e.into_error(&path))?
            }
            Err(e) => return Err(e.into_error(&path)),
        };
        let shared = Arc::new(Shared {
            path,
            files,
            cfg,
            clock,
            db: RwLock::new(Some(Arc::new(db))),
            state: Mutex::new(State {
                batch: 1,
                ..State::default()
            }),
            work: Condvar::new(),
            finished: Condvar::new(),
            counters: Counters::default(),
            unsynced: std::sync::atomic::AtomicBool::new(false),
            file_error_logged_ms: AtomicU64::new(0),
        });
        shared.init()?;
        // A quick open stays out of the way (a failed start must be one line); a slow one (a
        // large file's integrity check) has logged its progress and says when it is done.
        let took = started.elapsed();
        let level = if took >= OPEN_LOG_EVERY / 2 {
            log::Level::Info
        } else {
            log::Level::Debug
        };
        let c = &shared.counters;
        log::log!(
            level,
            "L2 file {} open in {:.1}s: {} items, {} bytes ({size} bytes on disk)",
            shared.path.display(),
            took.as_secs_f64(),
            c.items.load(Ordering::Relaxed),
            c.bytes.load(Ordering::Relaxed),
        );
        let s = shared.clone();
        let handle = std::thread::Builder::new()
            .name("ratmemcache-l2".into())
            .spawn(move || s.writer_loop())
            .map_err(|e| CoreError::Persistence(format!("cannot start the L2 writer: {e}")))?;
        Ok(DiskStore {
            shared,
            writer: Mutex::new(Some(handle)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    pub fn config(&self) -> &DiskConfig {
        &self.shared.cfg
    }

    /// The largest CAS unique ever stored: the L1 must hand out larger ones after a restart.
    pub fn max_cas(&self) -> u64 {
        self.shared.counters.max_cas.load(Ordering::Relaxed)
    }

    /// Reads a live record. An expired one is reported absent and queued for deletion; a record
    /// that fails to decode is logged, counted and deleted.
    pub fn get(&self, key: &[u8]) -> Result<Option<Loaded>, CoreError> {
        self.get_at_most(key, u32::MAX)
    }

    /// [`get`](Self::get), but a value over `max_len` bytes is reported absent without being
    /// read (the warm-up skips what the L1 would not take anyway).
    pub fn get_at_most(&self, key: &[u8], max_len: u32) -> Result<Option<Loaded>, CoreError> {
        self.shared.counters.reads.fetch_add(1, Ordering::Relaxed);
        // A file can go between reading its record and opening it when another client replaces
        // or deletes the key meanwhile: the second look finds the new state.
        let mut fault = None;
        for _ in 0..2 {
            let (h, file) = match self.lookup(key)? {
                None => return Ok(None),
                Some((h, _)) if h.value_len > max_len => return Ok(None),
                Some((h, Body::Inline(v))) => return Ok(Some(self.hit(h, Bytes::from(v)))),
                Some((h, Body::File(f))) => (h, f),
            };
            match self.shared.files.read(file, h.value_len) {
                Ok(v) => return Ok(Some(self.hit(h, v))),
                Err(e) => fault = Some((file, e)),
            }
        }
        let (file, e) = fault.expect("the loop ran");
        let sh = &self.shared;
        sh.counters.file_errors.fetch_add(1, Ordering::Relaxed);
        if let FileFault::Io(e) = &e {
            // Not the file's fault: report it, keep the record.
            return Err(CoreError::Disk(format!(
                "reading the L2 value file {}: {e}",
                sh.files.describe(file)
            )));
        }
        log::error!(
            "L2 value of a record in {} not served: {} {e}; the record is deleted",
            sh.path.display(),
            sh.files.describe(file)
        );
        self.enqueue(key, Op::Delete);
        Ok(None)
    }

    fn hit(&self, h: Header, v: Bytes) -> Loaded {
        self.shared.counters.hits.fetch_add(1, Ordering::Relaxed);
        (h, v)
    }

    /// The live record of `key`, queued or committed, decoded.
    fn lookup(&self, key: &[u8]) -> Result<Option<(Header, Body)>, CoreError> {
        let sh = &self.shared;
        let queued = {
            let st = sh.state.lock();
            match st.pending.get(key).or_else(|| {
                if st.clear_pending {
                    None
                } else {
                    st.committing.get(key)
                }
            }) {
                Some(op) => Some(op.clone()),
                None if st.clear_pending || st.clear_committing => return Ok(None),
                None => None,
            }
        };
        // Decoded straight from redb's page (one copy of the value), or from the queued record.
        let decoded = match queued {
            Some(Op::Delete) => return Ok(None),
            Some(Op::Put(r)) => record::decode(&r),
            None => match sh.read(|db| {
                let tx = db.begin_read()?;
                let t = match tx.open_table(ITEMS) {
                    Ok(t) => t,
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                Ok(t.get(key)?.map(|g| record::decode(g.value())))
            })? {
                Some(d) => d,
                None => return Ok(None),
            },
        };
        match decoded {
            Ok((h, body)) if h.is_live(sh.clock.now_ms()) => Ok(Some((h, body))),
            Ok(_) => {
                self.enqueue(key, Op::Delete);
                Ok(None)
            }
            Err(e) => {
                sh.counters.errors.fetch_add(1, Ordering::Relaxed);
                log::error!(
                    "L2 record unreadable in {}: {e}; it is deleted",
                    sh.path.display()
                );
                self.enqueue(key, Op::Delete);
                Ok(None)
            }
        }
    }

    /// Stores a record; with `sync = "always"` (or `wait`) returns once it is committed.
    /// A value of `file_threshold` bytes or more goes to its own file first (see [`files`]).
    pub fn put(&self, key: &[u8], h: &Header, value: &[u8], wait: bool) -> Result<(), CoreError> {
        let sh = &self.shared;
        let threshold = sh.cfg.file_threshold;
        if threshold == 0 || value.len() < threshold {
            let rec: Arc<[u8]> = record::encode(h, value, sh.cfg.compression).into();
            return self.write(key, Op::Put(rec), wait);
        }
        if let Some(rec) = record::encode_compressed(h, value, sh.cfg.compression, threshold) {
            return self.write(key, Op::Put(rec.into()), wait);
        }
        let durable = sh.cfg.sync == SyncMode::Always;
        let file = sh.files.write(value, durable).map_err(|e| {
            sh.counters.errors.fetch_add(1, Ordering::Relaxed);
            let dir = sh.files.dir().display();
            // At most one line a second: a full disk fails every large write until it has room.
            let now = sh.clock.now_ms();
            let last = sh.file_error_logged_ms.load(Ordering::Relaxed);
            if now >= last + 1000
                && sh
                    .file_error_logged_ms
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                log::error!("L2 value write to {dir} failed: {e}");
            }
            if is_no_space(&e) {
                CoreError::DiskFull(format!(
                    "out of disk space writing a value to {dir}; free some space"
                ))
            } else {
                CoreError::Disk(format!("writing a value to {dir}: {e}"))
            }
        })?;
        let rec: Arc<[u8]> = record::encode_file(h, file).into();
        self.write(key, Op::Put(rec), wait).inspect_err(|_| {
            // Refused before it was queued, or its batch failed and a newer write replaced it:
            // either way no commit names the file.
            if !self.queued_file(key, file) {
                sh.files.remove_all([file.id]);
            }
        })
    }

    /// Whether `file` is still what a queued put of `key` names.
    fn queued_file(&self, key: &[u8], file: FileRef) -> bool {
        let st = self.shared.state.lock();
        [&st.pending, &st.committing]
            .iter()
            .any(|b| b.get(key).and_then(Op::file) == Some(file))
    }

    /// A write now would wait: for its commit (`sync = "always"`) or for the writer thread to
    /// work off its backlog.
    pub fn writes_wait(&self) -> bool {
        let sh = &self.shared;
        sh.cfg.sync == SyncMode::Always || sh.state.lock().pending_bytes > MAX_PENDING_BYTES
    }

    /// Deletes a record, if there is one.
    pub fn delete(&self, key: &[u8], wait: bool) -> Result<(), CoreError> {
        self.write(key, Op::Delete, wait)
    }

    fn write(&self, key: &[u8], op: Op, wait: bool) -> Result<(), CoreError> {
        let sh = &self.shared;
        let wait = wait || sh.cfg.sync == SyncMode::Always;
        let mut st = sh.state.lock();
        if let Some(f) = st.failing {
            // Refuse while the disk is failing; the queued batch is retried meanwhile.
            return Err(f.error(&sh.path));
        }
        while st.pending_bytes > MAX_PENDING_BYTES && !st.stop {
            sh.finished.wait_for(&mut st, Duration::from_millis(100));
            if let Some(f) = st.failing {
                return Err(f.error(&sh.path));
            }
        }
        if st.stop {
            return Err(CoreError::Closed);
        }
        let batch = queue(&mut st, key, op);
        sh.counters.writes.fetch_add(1, Ordering::Relaxed);
        sh.work.notify_one();
        if !wait {
            return Ok(());
        }
        while st.done < batch {
            sh.finished.wait(&mut st);
        }
        match st.failures.iter().find(|(b, _)| *b == batch) {
            Some((_, f)) => Err(f.error(&sh.path)),
            None => Ok(()),
        }
    }

    fn enqueue(&self, key: &[u8], op: Op) {
        let mut st = self.shared.state.lock();
        if !st.stop {
            queue(&mut st, key, op);
            self.shared.work.notify_one();
        }
    }

    /// Drops every record.
    pub fn clear(&self, wait: bool) -> Result<(), CoreError> {
        let sh = &self.shared;
        let mut st = sh.state.lock();
        let dropped: Vec<u64> = st
            .pending
            .values()
            .filter_map(Op::file)
            .map(|f| f.id)
            .collect();
        st.dead_files.extend(dropped);
        st.pending.clear();
        st.pending_bytes = 0;
        st.clear_pending = true;
        let batch = st.batch;
        sh.work.notify_one();
        if wait || sh.cfg.sync == SyncMode::Always {
            st.want_durable |= sh.cfg.sync == SyncMode::Always;
            while st.done < batch {
                sh.finished.wait(&mut st);
            }
        }
        Ok(())
    }

    /// Waits until every write queued so far is committed; `durable` makes that commit fsync.
    pub fn flush(&self, durable: bool) -> Result<(), CoreError> {
        let sh = &self.shared;
        let mut st = sh.state.lock();
        if st.stop {
            return Ok(());
        }
        // The batch to wait for: the gathering one if it holds anything (or a durable commit
        // is wanted, which commits even an empty batch), else the last one taken.
        let batch = if durable || !st.pending.is_empty() || st.clear_pending {
            st.batch
        } else {
            st.batch - 1
        };
        st.want_durable |= durable;
        sh.work.notify_one();
        while st.done < batch {
            sh.finished.wait(&mut st);
        }
        match st.failures.iter().find(|(b, _)| *b == batch) {
            Some((_, f)) => Err(f.error(&sh.path)),
            None => Ok(()),
        }
    }

    /// Commits what is queued durably, stops the writer thread and closes the file. Idempotent.
    pub fn close(&self) -> Result<(), CoreError> {
        let flushed = self.flush(true);
        {
            let mut st = self.shared.state.lock();
            st.stop = true;
            self.shared.work.notify_all();
            self.shared.finished.notify_all();
        }
        if let Some(h) = self.writer.lock().take() {
            let _ = h.join();
        }
        self.shared.db.write().take();
        flushed
    }

    /// Records in the file, keys only, most recently written first, starting after `cursor`
    /// (exclusive); up to `limit`. For the warm-up.
    #[allow(clippy::type_complexity)]
    pub fn recent_keys(
        &self,
        cursor: Option<&(u64, Vec<u8>)>,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, CoreError> {
        self.shared.read(|db| {
            let tx = db.begin_read()?;
            let t = match tx.open_table(BY_AGE) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::with_capacity(limit);
            let range = match cursor {
                Some((at, k)) => t.range::<(u64, &[u8])>(..(*at, k.as_slice()))?,
                None => t.range::<(u64, &[u8])>(..)?,
            };
            for r in range.rev().take(limit) {
                let (k, _) = r?;
                let (at, key) = k.value();
                out.push((at, key.to_vec()));
            }
            Ok(out)
        })
    }

    /// Every live key (committed or queued), for the library's `keys()`.
    pub fn keys(&self) -> Result<Vec<Vec<u8>>, CoreError> {
        let mut out = Vec::new();
        self.walk(|k, _| out.push(k.to_vec()))?;
        Ok(out)
    }

    /// Calls `f` on every live record's key and header (committed or queued), in key order,
    /// inside one read transaction.
    pub fn walk(&self, mut f: impl FnMut(&[u8], &Header)) -> Result<(), CoreError> {
        self.flush(false)?;
        let now = self.shared.clock.now_ms();
        self.shared.read(|db| {
            let tx = db.begin_read()?;
            let t = match tx.open_table(ITEMS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            for r in t.iter()? {
                let (k, v) = r?;
                if let Ok(h) = record::decode_header(v.value()) {
                    if h.is_live(now) {
                        f(k.value(), &h);
                    }
                }
            }
            Ok(())
        })
    }

    /// Records committed so far (expired ones not yet swept included).
    pub fn len(&self) -> u64 {
        self.shared.counters.items.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> DiskStats {
        let c = &self.shared.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DiskStats {
            items: l(&c.items),
            bytes: l(&c.bytes),
            file_bytes: std::fs::metadata(&self.shared.path).map_or(0, |m| m.len()),
            reads: l(&c.reads),
            hits: l(&c.hits),
            writes: l(&c.writes),
            commits: l(&c.commits),
            evictions: l(&c.evictions),
            expirations: l(&c.expirations),
            errors: l(&c.errors),
            max_cas: l(&c.max_cas),
            file_errors: l(&c.file_errors),
            orphans_removed: l(&c.orphans_removed),
        }
    }

    /// Runs the expiry sweep now and waits for it (the writer thread runs it every
    /// `cleanup_interval`). Returns the records it deleted.
    pub fn sweep_expired(&self) -> Result<u64, CoreError> {
        // Queued deletes first, so what was already deleted isn't counted as swept.
        self.flush(false)?;
        let sh = &self.shared;
        let before = sh.counters.expirations.load(Ordering::Relaxed);
        let mut st = sh.state.lock();
        if st.stop {
            return Ok(0);
        }
        // The writer thread owns the write transactions and the counters they update.
        let target = st.sweeps + 1;
        st.sweep_requested = true;
        sh.work.notify_one();
        while st.sweeps < target && !st.stop {
            sh.finished.wait(&mut st);
        }
        Ok(sh.counters.expirations.load(Ordering::Relaxed) - before)
    }
}

impl Drop for DiskStore {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::error!("closing the L2 file {}: {e}", self.shared.path.display());
        }
    }
}

/// Queues `op` for `key` in the gathering batch; returns that batch's number.
fn queue(st: &mut State, key: &[u8], op: Op) -> u64 {
    let size = op.size(key);
    if let Some(old) = st.pending.insert(key.into(), op) {
        st.pending_bytes -= old.size(key);
        if let Some(f) = old.file() {
            st.dead_files.push(f.id);
        }
    }
    st.pending_bytes += size;
    st.batch
}

/// Turns any redb error into a message for the log and for the client.
fn storage(e: impl Into<redb::Error>) -> redb::Error {
    e.into()
}

impl Shared {
    fn db(&self) -> Option<Arc<Database>> {
        self.db.read().clone()
    }

    /// Runs a read against the current file.
    fn read<R>(&self, f: impl FnOnce(&Database) -> Result<R, redb::Error>) -> Result<R, CoreError> {
        let Some(db) = self.db() else {
            return Err(CoreError::Disk(format!(
                "the L2 file {} is not open (it is being reopened after an error)",
                self.path.display()
            )));
        };
        f(&db).map_err(|e| {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            CoreError::Disk(format!("reading the L2 file {}: {e}", self.path.display()))
        })
    }

    /// Creates the tables and loads the counters.
    fn init(&self) -> Result<(), CoreError> {
        let db = self.db().expect("just opened");
        let fail = |e: redb::Error| {
            CoreError::Persistence(format!(
                "cannot initialise the L2 file {}: {e}",
                self.path.display()
            ))
        };
        let tx = db.begin_write().map_err(storage).map_err(fail)?;
        let (items, bytes, max_cas, version) = {
            let items = tx.open_table(ITEMS).map_err(storage).map_err(fail)?;
            tx.open_table(BY_AGE).map_err(storage).map_err(fail)?;
            tx.open_table(BY_EXPIRY).map_err(storage).map_err(fail)?;
            let mut meta = tx.open_table(META).map_err(storage).map_err(fail)?;
            let get = |k: &str| -> Result<Option<u64>, CoreError> {
                Ok(meta
                    .get(k)
                    .map_err(storage)
                    .map_err(fail)?
                    .map(|g| g.value()))
            };
            let version = get("format")?;
            let bytes = get("bytes")?.unwrap_or(0);
            let max_cas = get("max_cas")?.unwrap_or(0);
            // An older file is upgraded in place (its records stay valid); an older build then
            // refuses it rather than misreading the records that name value files.
            if version.is_none_or(|v| v < u64::from(record::FORMAT_VERSION)) {
                meta.insert("format", u64::from(record::FORMAT_VERSION))
                    .map_err(storage)
                    .map_err(fail)?;
            }
            (
                items.len().map_err(storage).map_err(fail)?,
                bytes,
                max_cas,
                version,
            )
        };
        if let Some(v) = version.filter(|&v| v > u64::from(record::FORMAT_VERSION)) {
            return Err(CoreError::Persistence(format!(
                "the L2 file {} has format version {v}, newer than this build's {}; upgrade \
                 ratmemcache or use another [l2] data_dir",
                self.path.display(),
                record::FORMAT_VERSION
            )));
        }
        tx.commit().map_err(storage).map_err(fail)?;
        let c = &self.counters;
        c.items.store(items, Ordering::Relaxed);
        c.bytes.store(bytes, Ordering::Relaxed);
        c.max_cas.store(max_cas, Ordering::Relaxed);
        self.remove_orphan_files()
    }

    /// Removes the value files no record names (a crash between a file's write and its
    /// record's commit leaves one), and counts them.
    fn remove_orphan_files(&self) -> Result<(), CoreError> {
        let dir = self.files.dir();
        let fail = |e: String| {
            CoreError::Persistence(format!(
                "cannot check the L2 value files in {}: {e}; fix its permissions, or move the \
                 data dir aside to start empty",
                dir.display()
            ))
        };
        if !self.files.any().map_err(|e| fail(e.to_string()))? {
            return Ok(());
        }
        let mut live = HashSet::new();
        self.read(|db| {
            let tx = db.begin_read()?;
            for r in tx.open_table(ITEMS)?.iter()? {
                if let Some(f) = record::file_ref(r?.1.value()) {
                    live.insert(f.id);
                }
            }
            Ok(())
        })
        .map_err(|e| fail(e.to_string()))?;
        let removed = self
            .files
            .remove_orphans(&live, self.files.next_id())
            .map_err(|e| fail(e.to_string()))?;
        if removed > 0 {
            log::warn!(
                "removed {removed} L2 value file(s) in {} that no record names (left by a crash \
                 before their records were committed)",
                dir.display()
            );
        }
        self.counters
            .orphans_removed
            .store(removed, Ordering::Relaxed);
        Ok(())
    }
}

/// What a record counts against `max_disk_size`: its key, the record, its value file if it has
/// one, and `RECORD_OVERHEAD`.
fn cost(key: &[u8], rec: &[u8]) -> u64 {
    key.len() as u64 + record::stored_len(rec) + RECORD_OVERHEAD
}
