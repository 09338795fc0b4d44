//! Intrusive doubly linked lists over slot indices.
//!
//! Every policy keeps its order as one or more lists threaded through two `u32` arrays
//! (`prev`/`next`) indexed by slot. A slot is in at most one list at a time. Using indices instead
//! of pointers keeps the metadata at 8 bytes per entry and makes the invariants checkable.

/// The "no slot" marker: list ends and unlinked slots.
pub(crate) const NIL: u32 = u32::MAX;

/// The shared link storage for every list of one policy.
#[derive(Debug, Default)]
pub(crate) struct Links {
    prev: Vec<u32>,
    next: Vec<u32>,
}

impl Links {
    pub(crate) fn ensure(&mut self, slots: usize) {
        if self.prev.len() < slots {
            self.prev.resize(slots, NIL);
            self.next.resize(slots, NIL);
        }
    }

    #[inline]
    pub(crate) fn prev(&self, i: u32) -> u32 {
        self.prev[i as usize]
    }

    pub(crate) fn bytes_per_slot() -> usize {
        2 * std::mem::size_of::<u32>()
    }
}

/// One list: its two ends and its length. Front is the newest end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl Default for List {
    fn default() -> Self {
        List {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

impl List {
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub(crate) fn back(&self) -> Option<u32> {
        (self.tail != NIL).then_some(self.tail)
    }

    #[inline]
    pub(crate) fn push_front(&mut self, links: &mut Links, i: u32) {
        let iu = i as usize;
        links.prev[iu] = NIL;
        links.next[iu] = self.head;
        if self.head != NIL {
            links.prev[self.head as usize] = i;
        } else {
            self.tail = i;
        }
        self.head = i;
        self.len += 1;
    }

    #[inline]
    pub(crate) fn unlink(&mut self, links: &mut Links, i: u32) {
        let iu = i as usize;
        let (p, n) = (links.prev[iu], links.next[iu]);
        if p != NIL {
            links.next[p as usize] = n;
        } else {
            self.head = n;
        }
        if n != NIL {
            links.prev[n as usize] = p;
        } else {
            self.tail = p;
        }
        links.prev[iu] = NIL;
        links.next[iu] = NIL;
        self.len -= 1;
    }

    #[inline]
    pub(crate) fn move_to_front(&mut self, links: &mut Links, i: u32) {
        if self.head != i {
            self.unlink(links, i);
            self.push_front(links, i);
        }
    }

    /// Slots from front (newest) to back (oldest).
    pub(crate) fn iter<'a>(&self, links: &'a Links) -> impl Iterator<Item = u32> + 'a {
        let mut cur = self.head;
        std::iter::from_fn(move || {
            if cur == NIL {
                return None;
            }
            let out = cur;
            cur = links.next[cur as usize];
            Some(out)
        })
    }

    /// Checks the back links, the ends and the length; returns the members front to back.
    pub(crate) fn check(&self, links: &Links, name: &str) -> Result<Vec<u32>, String> {
        let mut members = Vec::with_capacity(self.len);
        let mut prev = NIL;
        for i in self.iter(links) {
            if links.prev(i) != prev {
                return Err(format!("{name}: slot {i} has a broken back link"));
            }
            members.push(i);
            if members.len() > self.len {
                return Err(format!(
                    "{name}: longer than its length {} (a cycle?)",
                    self.len
                ));
            }
            prev = i;
        }
        if prev != self.tail {
            return Err(format!(
                "{name}: tail {} is not the last member {prev}",
                self.tail
            ));
        }
        if members.len() != self.len {
            return Err(format!(
                "{name}: length {} but {} members",
                self.len,
                members.len()
            ));
        }
        Ok(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_unlink_move_keep_order() {
        let mut links = Links::default();
        links.ensure(8);
        let mut l = List::default();
        for i in 0..5 {
            l.push_front(&mut links, i);
        }
        assert_eq!(l.iter(&links).collect::<Vec<_>>(), vec![4, 3, 2, 1, 0]);
        l.unlink(&mut links, 2);
        l.move_to_front(&mut links, 0);
        assert_eq!(l.check(&links, "l").unwrap(), vec![0, 4, 3, 1]);
        assert_eq!(l.back(), Some(1));
        l.unlink(&mut links, 1);
        l.unlink(&mut links, 0);
        assert_eq!(l.check(&links, "l").unwrap(), vec![4, 3]);
        l.unlink(&mut links, 4);
        l.unlink(&mut links, 3);
        assert!(l.is_empty());
        assert_eq!(l.back(), None);
        l.check(&links, "l").unwrap();
    }
}
