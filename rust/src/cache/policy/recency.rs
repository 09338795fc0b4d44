//! LRU and FIFO: one list, newest at the front, victims from the back.
//!
//! LRU moves an entry to the front on every hit, so it keeps what was used recently; FIFO does
//! nothing on a hit, which makes hits cheaper but lets popular keys age out like any other.

use super::list::{Links, List};
use super::{same_members, EntryInfo, Policy, RemoveReason};

pub(crate) struct Recency {
    links: Links,
    list: List,
    move_on_hit: bool,
    name: &'static str,
}

impl Recency {
    pub(crate) fn lru() -> Self {
        Recency {
            links: Links::default(),
            list: List::default(),
            move_on_hit: true,
            name: "lru",
        }
    }

    pub(crate) fn fifo() -> Self {
        Recency {
            move_on_hit: false,
            name: "fifo",
            ..Recency::lru()
        }
    }
}

impl Policy for Recency {
    fn ensure(&mut self, slots: usize) {
        self.links.ensure(slots);
    }

    fn insert(&mut self, slot: u32, _info: EntryInfo) {
        self.list.push_front(&mut self.links, slot);
    }

    fn touch(&mut self, slot: u32) {
        if self.move_on_hit {
            self.list.move_to_front(&mut self.links, slot);
        }
    }

    fn remove(&mut self, slot: u32, _info: EntryInfo, _why: RemoveReason) {
        self.list.unlink(&mut self.links, slot);
    }

    fn victim(&mut self) -> Option<u32> {
        self.list.back()
    }

    fn validate(&self, live: &[u32]) -> Result<(), String> {
        let members = self.list.check(&self.links, self.name)?;
        same_members(members, live, self.name)
    }

    fn bytes_per_slot(&self) -> usize {
        Links::bytes_per_slot()
    }
}
