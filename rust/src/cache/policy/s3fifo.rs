//! S3-FIFO (Yang et al., SOSP 2023): a small FIFO, a main FIFO and a ghost FIFO.
//!
//! New entries enter the small queue (about 10% of the entries). When the small queue is over its
//! share, its oldest entry either moves to main, if it was read since it arrived, or is evicted and
//! its key hash is remembered in the ghost queue. A new entry whose hash is in the ghost goes
//! straight to main. Main is a FIFO with up to three second chances (a 2-bit read counter). Most
//! keys in real traces are read once; they leave after a short stay in the small queue without
//! disturbing main. Hits only bump a counter, so reads are as cheap as FIFO's.

use std::collections::VecDeque;

use hashbrown::HashMap;

use super::list::{Links, List};
use super::{same_members, EntryInfo, Policy, RemoveReason};

/// The small queue's share of the entries, in percent.
const SMALL_PERCENT: usize = 10;
/// Reads needed while in the small queue to be promoted to main.
const PROMOTE_AT: u8 = 1;
/// The read counter saturates here (two bits, as in the paper).
const MAX_FREQ: u8 = 3;

/// Hashes of recently evicted small-queue entries, at most `cap` of them, oldest dropped first.
#[derive(Default)]
struct Ghost {
    order: VecDeque<(u64, u64)>,
    latest: HashMap<u64, u64, foldhash::fast::FixedState>,
    seq: u64,
}

impl Ghost {
    fn push(&mut self, hash: u64, cap: usize) {
        self.seq += 1;
        self.order.push_back((hash, self.seq));
        self.latest.insert(hash, self.seq);
        while self.order.len() > cap.max(1) {
            let Some((h, s)) = self.order.pop_front() else {
                break;
            };
            if self.latest.get(&h) == Some(&s) {
                self.latest.remove(&h);
            }
        }
    }

    /// True (and forgets it) if `hash` was evicted recently.
    fn take(&mut self, hash: u64) -> bool {
        self.latest.remove(&hash).is_some()
    }
}

#[derive(Default)]
pub(crate) struct S3Fifo {
    links: Links,
    freq: Vec<u8>,
    in_main: Vec<bool>,
    small: List,
    main: List,
    ghost: Ghost,
}

impl Policy for S3Fifo {
    fn ensure(&mut self, slots: usize) {
        self.links.ensure(slots);
        if self.freq.len() < slots {
            self.freq.resize(slots, 0);
            self.in_main.resize(slots, false);
        }
    }

    fn insert(&mut self, slot: u32, info: EntryInfo) {
        self.freq[slot as usize] = 0;
        let to_main = self.ghost.take(info.hash);
        self.in_main[slot as usize] = to_main;
        if to_main {
            self.main.push_front(&mut self.links, slot);
        } else {
            self.small.push_front(&mut self.links, slot);
        }
    }

    fn touch(&mut self, slot: u32) {
        let f = &mut self.freq[slot as usize];
        *f = (*f + 1).min(MAX_FREQ);
    }

    fn remove(&mut self, slot: u32, info: EntryInfo, why: RemoveReason) {
        if self.in_main[slot as usize] {
            self.main.unlink(&mut self.links, slot);
        } else {
            self.small.unlink(&mut self.links, slot);
            if why == RemoveReason::Evicted {
                // The ghost remembers about as many keys as main holds.
                let cap = self.main.len() + self.small.len();
                self.ghost.push(info.hash, cap);
            }
        }
        self.in_main[slot as usize] = false;
    }

    fn victim(&mut self) -> Option<u32> {
        // Each pass either returns, promotes a small entry, or spends a main entry's chance; all
        // three are finite, so this terminates.
        loop {
            let total = self.small.len() + self.main.len();
            let small_over = self.small.len() * 100 >= total * SMALL_PERCENT;
            if let Some(t) = self
                .small
                .back()
                .filter(|_| small_over || self.main.is_empty())
            {
                if self.freq[t as usize] >= PROMOTE_AT {
                    self.small.unlink(&mut self.links, t);
                    self.main.push_front(&mut self.links, t);
                    self.in_main[t as usize] = true;
                    self.freq[t as usize] = 0;
                    continue;
                }
                return Some(t);
            }
            let t = self.main.back()?;
            if self.freq[t as usize] > 0 {
                self.freq[t as usize] -= 1;
                self.main.move_to_front(&mut self.links, t);
                continue;
            }
            return Some(t);
        }
    }

    fn validate(&self, live: &[u32]) -> Result<(), String> {
        let small = self.small.check(&self.links, "s3fifo small")?;
        let main = self.main.check(&self.links, "s3fifo main")?;
        if let Some(s) = small.iter().find(|&&s| self.in_main[s as usize]) {
            return Err(format!("s3fifo: slot {s} is in small but flagged main"));
        }
        if let Some(s) = main.iter().find(|&&s| !self.in_main[s as usize]) {
            return Err(format!("s3fifo: slot {s} is in main but not flagged"));
        }
        if let Some(s) = small
            .iter()
            .chain(&main)
            .find(|&&s| self.freq[s as usize] > MAX_FREQ)
        {
            return Err(format!(
                "s3fifo: slot {s} has a read counter over {MAX_FREQ}"
            ));
        }
        if self.ghost.latest.len() > self.ghost.order.len() {
            return Err("s3fifo: the ghost map outgrew its queue".into());
        }
        same_members(small.into_iter().chain(main).collect(), live, "s3fifo")
    }

    fn bytes_per_slot(&self) -> usize {
        // Links, counter and flag, plus about one ghost record (queue pair + map entry).
        Links::bytes_per_slot() + 2 + 16 + 17
    }
}
