//! The L2's writer thread: it takes the pending writes as one batch, commits them in one
//! write transaction (group commit), retries a failed batch with a back-off after reopening the
//! file, and runs the background expiry sweep.

use super::*;

impl Shared {
    pub(super) fn writer_loop(&self) {
        let mut last_durable = Instant::now();
        let mut last_sweep = Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            let (batch, id, clear, durable, dead) = {
                let mut st = self.state.lock();
                let tick = match self.cfg.sync {
                    SyncMode::Periodic => self.cfg.sync_interval,
                    _ => Duration::from_secs(1),
                };
                if !st.has_work() && !st.stop && !st.sweep_requested {
                    self.work.wait_for(&mut st, tick);
                }
                if std::mem::take(&mut st.sweep_requested) {
                    drop(st);
                    self.sweep_now();
                    last_sweep = Instant::now();
                    let mut st = self.state.lock();
                    st.sweeps += 1;
                    self.finished.notify_all();
                    continue;
                }
                if st.stop && !st.has_work() {
                    return;
                }
                // Only what was committed without an fsync needs one; an idle store never syncs.
                let periodic_due = self.cfg.sync == SyncMode::Periodic
                    && self.unsynced.load(Ordering::Relaxed)
                    && last_durable.elapsed() >= self.cfg.sync_interval;
                if !st.has_work() && !periodic_due {
                    drop(st);
                    self.maybe_sweep(&mut last_sweep);
                    continue;
                }
                let durable = st.want_durable || self.cfg.sync == SyncMode::Always || periodic_due;
                st.want_durable = false;
                let batch = std::mem::take(&mut st.pending);
                st.committing = batch.clone();
                st.pending_bytes = 0;
                let clear = std::mem::take(&mut st.clear_pending);
                st.clear_committing = clear;
                let id = st.batch;
                st.batch += 1;
                let dead = std::mem::take(&mut st.dead_files);
                (batch, id, clear, durable, dead)
            };
            let result = self.commit(&batch, clear, durable);
            let mut st = self.state.lock();
            st.committing.clear();
            st.clear_committing = false;
            match result {
                Ok(gone) => {
                    if durable {
                        last_durable = Instant::now();
                    }
                    st.failing = None;
                    backoff = Duration::from_millis(50);
                    // The records are committed: no reader can find these files any more,
                    // except one that looked just before, and it looks again (`get`).
                    drop(st);
                    self.files.remove_all(gone.into_iter().chain(dead));
                    st = self.state.lock();
                }
                Err(e) => {
                    let f = DiskFailure::of(&e);
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    log::error!("L2 commit to {} failed: {e}", self.path.display());
                    // Newer writes win over the failed batch's.
                    st.dead_files.extend(dead);
                    for (k, op) in batch {
                        if !st.pending.contains_key(&k) && !st.clear_pending {
                            st.pending_bytes += op.size(&k);
                            st.pending.insert(k, op);
                        } else if let Some(f) = op.file() {
                            st.dead_files.push(f.id);
                        }
                    }
                    st.clear_pending |= clear;
                    st.failing = Some(f);
                    st.failures.push_back((id, f));
                    if st.failures.len() > 64 {
                        st.failures.pop_front();
                    }
                }
            }
            st.done = id;
            let failed = st.failing.is_some();
            self.finished.notify_all();
            drop(st);
            if failed {
                self.reopen();
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            } else {
                self.maybe_sweep(&mut last_sweep);
            }
        }
    }

    fn maybe_sweep(&self, last: &mut Instant) {
        let every = self.cfg.cleanup_interval;
        if !every.is_zero() && last.elapsed() >= every {
            *last = Instant::now();
            self.sweep_now();
        }
    }

    /// redb wants a fresh handle after an I/O error in a commit.
    fn reopen(&self) {
        let mut slot = self.db.write();
        let Some(old) = slot.take() else { return };
        drop(old);
        match open_db(&self.path, self.cfg.page_cache) {
            Ok(db) => *slot = Some(Arc::new(db)),
            Err(e) => {
                let msg = e.into_error(&self.path);
                log::error!("reopening the L2 file after an error: {msg}");
            }
        }
    }

    /// Applies one batch in one transaction, then evicts down to `max_disk_size`. Returns the
    /// value files of the records it dropped, to remove now that the commit is done.
    fn commit(&self, batch: &Batch, clear: bool, durable: bool) -> Result<Vec<u64>, StorageError> {
        let db = match self.db() {
            Some(db) => db,
            None => {
                self.reopen();
                self.db().ok_or(StorageError::PreviousIo)?
            }
        };
        let to_storage = |e: redb::Error| match e {
            redb::Error::Io(io) => StorageError::Io(io),
            redb::Error::PreviousIo => StorageError::PreviousIo,
            other => StorageError::Corrupted(other.to_string()),
        };
        let run = || -> Result<Vec<u64>, redb::Error> {
            let mut gone = Vec::new();
            let mut tx = db.begin_write()?;
            self.unsynced.store(!durable, Ordering::Relaxed);
            tx.set_durability(if durable {
                Durability::Immediate
            } else {
                Durability::None
            })
            .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
            let c = &self.counters;
            let (mut items, mut bytes) = if clear {
                (0, 0)
            } else {
                (
                    c.items.load(Ordering::Relaxed),
                    c.bytes.load(Ordering::Relaxed),
                )
            };
            let mut max_cas = c.max_cas.load(Ordering::Relaxed);
            let mut evicted = 0;
            {
                let mut t = tx.open_table(ITEMS)?;
                let mut age = tx.open_table(BY_AGE)?;
                let mut exp = tx.open_table(BY_EXPIRY)?;
                if clear {
                    for r in t.iter()? {
                        if let Some(f) = record::file_ref(r?.1.value()) {
                            gone.push(f.id);
                        }
                    }
                    t.retain(|_, _| false)?;
                    age.retain(|_, _| false)?;
                    exp.retain(|_, _| false)?;
                }
                for (key, op) in batch {
                    if let Some(old) = t.remove(&**key)? {
                        if let Ok(h) = record::decode_header(old.value()) {
                            age.remove((h.stored_at, &**key))?;
                            if h.expires_at != 0 {
                                exp.remove((h.expires_at, &**key))?;
                            }
                        }
                        items -= 1;
                        bytes = bytes.saturating_sub(cost(key, old.value()));
                        gone.extend(record::file_ref(old.value()).map(|f| f.id));
                    }
                    if let Op::Put(rec) = op {
                        let h = record::decode_header(rec).expect("encoded here");
                        t.insert(&**key, &**rec)?;
                        age.insert((h.stored_at, &**key), ())?;
                        if h.expires_at != 0 {
                            exp.insert((h.expires_at, &**key), ())?;
                        }
                        items += 1;
                        bytes += cost(key, rec);
                        max_cas = max_cas.max(h.cas);
                    }
                }
                let limit = self.cfg.max_disk_size;
                while limit > 0 && bytes > limit {
                    let Some((k, _)) = age.pop_first()? else {
                        break;
                    };
                    let (_, key) = k.value();
                    let key = key.to_vec();
                    drop(k);
                    if let Some(old) = t.remove(key.as_slice())? {
                        if let Ok(h) = record::decode_header(old.value()) {
                            if h.expires_at != 0 {
                                exp.remove((h.expires_at, key.as_slice()))?;
                            }
                        }
                        items -= 1;
                        bytes = bytes.saturating_sub(cost(&key, old.value()));
                        gone.extend(record::file_ref(old.value()).map(|f| f.id));
                        evicted += 1;
                    }
                }
                let mut meta = tx.open_table(META)?;
                meta.insert("bytes", bytes)?;
                meta.insert("max_cas", max_cas)?;
            }
            tx.commit()?;
            c.items.store(items, Ordering::Relaxed);
            c.bytes.store(bytes, Ordering::Relaxed);
            c.max_cas.store(max_cas, Ordering::Relaxed);
            c.evictions.fetch_add(evicted, Ordering::Relaxed);
            c.commits.fetch_add(1, Ordering::Relaxed);
            Ok(gone)
        };
        run().map_err(to_storage)
    }

    /// Deletes expired records, `SWEEP_BATCH` per transaction.
    fn sweep_now(&self) {
        loop {
            let now = self.clock.now_ms();
            let Some(db) = self.db() else { return };
            let mut gone = Vec::new();
            let mut run = || -> Result<u64, redb::Error> {
                let mut tx = db.begin_write()?;
                // With sync = "never", the sweep is the checkpoint: it makes everything so far
                // durable, so a crash loses at most one cleanup_interval of writes.
                let checkpoint =
                    self.cfg.sync == SyncMode::Never && self.unsynced.load(Ordering::Relaxed);
                tx.set_durability(if checkpoint {
                    Durability::Immediate
                } else {
                    Durability::None
                })
                .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
                if checkpoint {
                    self.unsynced.store(false, Ordering::Relaxed);
                }
                let c = &self.counters;
                let mut removed = 0u64;
                let mut freed = 0u64;
                {
                    let mut t = tx.open_table(ITEMS)?;
                    let mut age = tx.open_table(BY_AGE)?;
                    let mut exp = tx.open_table(BY_EXPIRY)?;
                    let mut due = Vec::new();
                    for r in exp.range::<(u64, &[u8])>(..=(now, &[][..]))? {
                        let (k, _) = r?;
                        let (at, key) = k.value();
                        if at > now {
                            break;
                        }
                        due.push((at, key.to_vec()));
                        if due.len() >= SWEEP_BATCH {
                            break;
                        }
                    }
                    for (at, key) in &due {
                        exp.remove((*at, key.as_slice()))?;
                        if let Some(old) = t.remove(key.as_slice())? {
                            if let Ok(h) = record::decode_header(old.value()) {
                                age.remove((h.stored_at, key.as_slice()))?;
                            }
                            removed += 1;
                            freed += cost(key, old.value());
                            gone.extend(record::file_ref(old.value()).map(|f| f.id));
                        }
                    }
                    let bytes = c.bytes.load(Ordering::Relaxed).saturating_sub(freed);
                    tx.open_table(META)?.insert("bytes", bytes)?;
                }
                tx.commit()?;
                c.items.fetch_sub(removed, Ordering::Relaxed);
                c.bytes.fetch_sub(
                    freed.min(c.bytes.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
                c.expirations.fetch_add(removed, Ordering::Relaxed);
                Ok(removed)
            };
            // Only the writer thread sweeps, so the counters never race a batch's commit.
            let swept = run();
            if swept.is_ok() {
                self.files.remove_all(gone);
            }
            match swept {
                Ok(n) if n as usize >= SWEEP_BATCH => continue,
                Ok(_) => return,
                Err(e) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    log::error!("L2 expiry sweep of {} failed: {e}", self.path.display());
                    return;
                }
            }
        }
    }
}
