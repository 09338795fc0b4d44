//! `ttl` (the original's `TtlBased`): evict the entry that expires soonest.
//!
//! Entries with a deadline sit in an ordered set keyed by (deadline, slot); entries without one
//! sit in an LRU list and are evicted only when no entry with a deadline is left. It drops what
//! would die soon anyway, at O(log n) per write, and ignores popularity entirely.

use std::collections::BTreeSet;

use super::list::{Links, List};
use super::{same_members, EntryInfo, Policy, RemoveReason};

#[derive(Default)]
pub(crate) struct TtlFirst {
    links: Links,
    deadline: Vec<u64>,
    by_deadline: BTreeSet<(u64, u32)>,
    no_deadline: List,
}

impl TtlFirst {
    fn add(&mut self, slot: u32, expires_at: u64) {
        self.deadline[slot as usize] = expires_at;
        if expires_at == 0 {
            self.no_deadline.push_front(&mut self.links, slot);
        } else {
            self.by_deadline.insert((expires_at, slot));
        }
    }

    fn take(&mut self, slot: u32) {
        let d = self.deadline[slot as usize];
        if d == 0 {
            self.no_deadline.unlink(&mut self.links, slot);
        } else {
            self.by_deadline.remove(&(d, slot));
        }
    }
}

impl Policy for TtlFirst {
    fn ensure(&mut self, slots: usize) {
        self.links.ensure(slots);
        if self.deadline.len() < slots {
            self.deadline.resize(slots, 0);
        }
    }

    fn insert(&mut self, slot: u32, info: EntryInfo) {
        self.add(slot, info.expires_at);
    }

    fn touch(&mut self, slot: u32) {
        if self.deadline[slot as usize] == 0 {
            self.no_deadline.move_to_front(&mut self.links, slot);
        }
    }

    fn update(&mut self, slot: u32, _old: EntryInfo, new: EntryInfo) {
        self.take(slot);
        self.add(slot, new.expires_at);
    }

    fn remove(&mut self, slot: u32, _info: EntryInfo, _why: RemoveReason) {
        self.take(slot);
    }

    fn victim(&mut self) -> Option<u32> {
        self.by_deadline
            .first()
            .map(|&(_, s)| s)
            .or_else(|| self.no_deadline.back())
    }

    fn validate(&self, live: &[u32]) -> Result<(), String> {
        let mut all = self
            .no_deadline
            .check(&self.links, "ttl no-deadline list")?;
        if let Some(s) = all.iter().find(|&&s| self.deadline[s as usize] != 0) {
            return Err(format!(
                "ttl: slot {s} has a deadline but sits in the no-deadline list"
            ));
        }
        for &(d, s) in &self.by_deadline {
            if self.deadline[s as usize] != d {
                return Err(format!("ttl: slot {s} is filed under deadline {d}"));
            }
            all.push(s);
        }
        same_members(all, live, "ttl")
    }

    fn bytes_per_slot(&self) -> usize {
        // Links, the deadline, and roughly one B-tree element (16 bytes plus node slack).
        Links::bytes_per_slot() + 8 + 24
    }
}
