//! LFU in O(1): one LRU list per access count (0..=255), and a bitmap of the non-empty ones.
//!
//! The victim is the least recently used entry among those with the lowest count. Counts
//! saturate at 255 and never decay: long-term favourites are kept even after they cool down,
//! which is LFU's classic strength on stable popularity and its weakness when popularity shifts.

use super::list::{Links, List};
use super::{same_members, EntryInfo, Policy, RemoveReason};

const BUCKETS: usize = 256;

pub(crate) struct Lfu {
    links: Links,
    count: Vec<u8>,
    buckets: Box<[List; BUCKETS]>,
    non_empty: [u64; BUCKETS / 64],
}

impl Default for Lfu {
    fn default() -> Self {
        Lfu {
            links: Links::default(),
            count: Vec::new(),
            buckets: Box::new([List::default(); BUCKETS]),
            non_empty: [0; BUCKETS / 64],
        }
    }
}

impl Lfu {
    fn push(&mut self, slot: u32, c: u8) {
        self.buckets[c as usize].push_front(&mut self.links, slot);
        self.non_empty[c as usize / 64] |= 1 << (c % 64);
        self.count[slot as usize] = c;
    }

    fn unlink(&mut self, slot: u32) -> u8 {
        let c = self.count[slot as usize];
        let b = &mut self.buckets[c as usize];
        b.unlink(&mut self.links, slot);
        if b.is_empty() {
            self.non_empty[c as usize / 64] &= !(1 << (c % 64));
        }
        c
    }

    fn lowest_bucket(&self) -> Option<usize> {
        self.non_empty
            .iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map(|(i, w)| i * 64 + w.trailing_zeros() as usize)
    }
}

impl Policy for Lfu {
    fn ensure(&mut self, slots: usize) {
        self.links.ensure(slots);
        if self.count.len() < slots {
            self.count.resize(slots, 0);
        }
    }

    fn insert(&mut self, slot: u32, _info: EntryInfo) {
        self.push(slot, 0);
    }

    fn touch(&mut self, slot: u32) {
        let c = self.unlink(slot);
        self.push(slot, c.saturating_add(1));
    }

    fn remove(&mut self, slot: u32, _info: EntryInfo, _why: RemoveReason) {
        self.unlink(slot);
    }

    fn victim(&mut self) -> Option<u32> {
        self.lowest_bucket().and_then(|b| self.buckets[b].back())
    }

    fn validate(&self, live: &[u32]) -> Result<(), String> {
        let mut all = Vec::new();
        for (c, b) in self.buckets.iter().enumerate() {
            let members = b.check(&self.links, "lfu bucket")?;
            let bit = self.non_empty[c / 64] >> (c % 64) & 1 == 1;
            if bit == members.is_empty() {
                return Err(format!(
                    "lfu: bitmap bit {c} is {bit} but the bucket has {} members",
                    members.len()
                ));
            }
            if let Some(m) = members
                .iter()
                .find(|&&m| self.count[m as usize] as usize != c)
            {
                return Err(format!(
                    "lfu: slot {m} is in bucket {c} but has count {}",
                    self.count[*m as usize]
                ));
            }
            all.extend(members);
        }
        same_members(all, live, "lfu")
    }

    fn bytes_per_slot(&self) -> usize {
        Links::bytes_per_slot() + 1
    }
}
