//! SIEVE (Zhang et al., NSDI 2024): a FIFO queue, a visited bit, and a hand.
//!
//! A hit only sets the entry's visited bit, so reads never reorder anything. To evict, the hand
//! walks from the oldest entry towards the newest: a visited entry loses its bit and stays where
//! it is, the first unvisited one is the victim, and the hand stays there for next time. Hit
//! ratios close to the best adaptive policies at the cost of FIFO.

use super::list::{Links, List, NIL};
use super::{same_members, EntryInfo, Policy, RemoveReason};

pub(crate) struct Sieve {
    links: Links,
    visited: Vec<bool>,
    queue: List,
    hand: u32,
}

impl Default for Sieve {
    fn default() -> Self {
        Sieve {
            links: Links::default(),
            visited: Vec::new(),
            queue: List::default(),
            hand: NIL,
        }
    }
}

impl Policy for Sieve {
    fn ensure(&mut self, slots: usize) {
        self.links.ensure(slots);
        if self.visited.len() < slots {
            self.visited.resize(slots, false);
        }
    }

    fn insert(&mut self, slot: u32, _info: EntryInfo) {
        self.visited[slot as usize] = false;
        self.queue.push_front(&mut self.links, slot);
    }

    fn touch(&mut self, slot: u32) {
        self.visited[slot as usize] = true;
    }

    fn remove(&mut self, slot: u32, _info: EntryInfo, _why: RemoveReason) {
        if self.hand == slot {
            self.hand = self.links.prev(slot);
        }
        self.queue.unlink(&mut self.links, slot);
        self.visited[slot as usize] = false;
    }

    fn victim(&mut self) -> Option<u32> {
        let tail = self.queue.back()?;
        let mut h = if self.hand == NIL { tail } else { self.hand };
        // Terminates within one lap: every visited entry passed is cleared.
        while self.visited[h as usize] {
            self.visited[h as usize] = false;
            h = self.links.prev(h);
            if h == NIL {
                h = tail;
            }
        }
        self.hand = h;
        Some(h)
    }

    fn validate(&self, live: &[u32]) -> Result<(), String> {
        let members = self.queue.check(&self.links, "sieve")?;
        if self.hand != NIL && !members.contains(&self.hand) {
            return Err(format!(
                "sieve: the hand points at slot {} outside the queue",
                self.hand
            ));
        }
        same_members(members, live, "sieve")
    }

    fn bytes_per_slot(&self) -> usize {
        Links::bytes_per_slot() + 1
    }
}
