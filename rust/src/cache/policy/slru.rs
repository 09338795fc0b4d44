//! `hybrid`: segmented LRU (Karedla, Love and Wherry, 1994), LRU order with a frequency guard.
//!
//! New entries enter a *probation* LRU. A hit while on probation promotes the entry to the
//! *protected* LRU. When an eviction is due, the protected segment is first trimmed to 80% of the
//! entries, its overflow demoted to the front of probation; then the victim comes from the back of
//! probation. (Trimming only at eviction time means a cache that is not yet full protects freely.) So an entry must
//! be used twice to be protected, and a scan of one-hit keys only churns probation: recency
//! decides within a segment, frequency (one hit or more) decides between them. The original
//! RatMemCache flipped a coin between an LRU and an LFU victim; this is deterministic and
//! scan-resistant.

use super::list::{Links, List};
use super::{same_members, EntryInfo, Policy, RemoveReason};

/// The protected segment's share of the entries, in percent.
const PROTECTED_PERCENT: usize = 80;

#[derive(Default)]
pub(crate) struct Slru {
    links: Links,
    protected_flag: Vec<bool>,
    probation: List,
    protected: List,
}

impl Slru {
    fn rebalance(&mut self) {
        let total = self.probation.len() + self.protected.len();
        while self.protected.len() * 100 > total * PROTECTED_PERCENT {
            let Some(d) = self.protected.back() else {
                break;
            };
            self.protected.unlink(&mut self.links, d);
            self.probation.push_front(&mut self.links, d);
            self.protected_flag[d as usize] = false;
        }
    }
}

impl Policy for Slru {
    fn ensure(&mut self, slots: usize) {
        self.links.ensure(slots);
        if self.protected_flag.len() < slots {
            self.protected_flag.resize(slots, false);
        }
    }

    fn insert(&mut self, slot: u32, _info: EntryInfo) {
        self.protected_flag[slot as usize] = false;
        self.probation.push_front(&mut self.links, slot);
    }

    fn touch(&mut self, slot: u32) {
        if self.protected_flag[slot as usize] {
            self.protected.move_to_front(&mut self.links, slot);
        } else {
            self.probation.unlink(&mut self.links, slot);
            self.protected.push_front(&mut self.links, slot);
            self.protected_flag[slot as usize] = true;
        }
    }

    fn remove(&mut self, slot: u32, _info: EntryInfo, _why: RemoveReason) {
        if self.protected_flag[slot as usize] {
            self.protected.unlink(&mut self.links, slot);
        } else {
            self.probation.unlink(&mut self.links, slot);
        }
        self.protected_flag[slot as usize] = false;
    }

    fn victim(&mut self) -> Option<u32> {
        self.rebalance();
        self.probation.back().or_else(|| self.protected.back())
    }

    fn validate(&self, live: &[u32]) -> Result<(), String> {
        let prob = self.probation.check(&self.links, "hybrid probation")?;
        let prot = self.protected.check(&self.links, "hybrid protected")?;
        if let Some(s) = prob.iter().find(|&&s| self.protected_flag[s as usize]) {
            return Err(format!(
                "hybrid: slot {s} is on probation but flagged protected"
            ));
        }
        if let Some(s) = prot.iter().find(|&&s| !self.protected_flag[s as usize]) {
            return Err(format!("hybrid: slot {s} is protected but not flagged"));
        }
        same_members(prob.into_iter().chain(prot).collect(), live, "hybrid")
    }

    fn bytes_per_slot(&self) -> usize {
        Links::bytes_per_slot() + 1
    }
}
