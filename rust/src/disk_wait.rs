//! Which requests may wait on the disk, so that an I/O engine hands off only those.
//!
//! With an L2, most requests still never touch the disk: an L1 hit, or a small write queued for
//! the writer thread. An event loop can answer those itself; what it must not run is a request
//! that reads the L2 (an L1 miss), writes a value file, waits for a durable commit
//! (`sync = "always"`), waits out the writer's backlog, or contends with another thread's disk
//! work for a key's stripe.
//!
//! An I/O engine feeds a [`Session`](crate::protocol::session::Session) that hands off waits
//! (`Session::set_hands_off_waits`). The session runs its requests inside [`Refusing`]: the
//! tier, at each point where it would wait, calls [`refuse`] instead, before it has changed
//! anything, and the request is rolled back (its bytes stay buffered, its reply is dropped).
//! The session stops there and says so (`Session::must_wait`); the engine sends what was
//! answered, then feeds again where waiting is fine: in a worker thread (anyio), or inside
//! `tokio::task::block_in_place` (native).
//!
//! Outside a refusing section (the Python library, UDP, tests, the hand-off itself) every call
//! waits as it always did.

use std::cell::Cell;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Waits are fine (the default).
    Open,
    /// Waits are refused.
    Refusing,
    /// A wait was refused in this section.
    Refused,
}

thread_local! {
    static GATE: Cell<Gate> = const { Cell::new(Gate::Open) };
}

/// While alive, this thread refuses waits on the disk; dropping it restores the state before.
#[must_use = "the section ends when the guard drops"]
pub struct Refusing {
    before: Gate,
}

impl Refusing {
    pub fn enter() -> Refusing {
        Refusing {
            before: GATE.with(|g| g.replace(Gate::Refusing)),
        }
    }
}

impl Drop for Refusing {
    fn drop(&mut self) {
        GATE.with(|g| g.set(self.before));
    }
}

/// At a point that would wait on the disk: `true` (and the refusal is noted) inside a refusing
/// section, where the caller must give up before changing anything; `false` where waiting is
/// fine.
#[inline]
pub fn refuse() -> bool {
    GATE.with(|g| match g.get() {
        Gate::Open => false,
        Gate::Refusing | Gate::Refused => {
            g.set(Gate::Refused);
            true
        }
    })
}

/// A wait was refused in the current section: the request in hand must be rolled back.
#[inline]
pub fn refused() -> bool {
    GATE.with(|g| g.get() == Gate::Refused)
}

/// Waits are refused on this thread now (a refusing section is open).
#[inline]
pub fn refusing() -> bool {
    GATE.with(|g| g.get() != Gate::Open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_refused_only_inside_a_section_and_the_refusal_is_remembered() {
        assert!(!refuse() && !refused() && !refusing());
        {
            let _g = Refusing::enter();
            assert!(refusing() && !refused());
            assert!(refuse());
            assert!(refused());
        }
        assert!(!refusing() && !refused());
        assert!(!refuse());
    }

    #[test]
    fn sections_nest_and_restore_the_outer_state() {
        let _outer = Refusing::enter();
        assert!(refuse());
        {
            let _inner = Refusing::enter();
            assert!(!refused());
        }
        assert!(
            refused(),
            "the outer section's refusal survives the inner one"
        );
    }
}
