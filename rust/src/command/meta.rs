//! The meta commands' rules (`mg`, `ms`, `md`, `ma`, `me`): lifetimes as they are shown, the
//! recache threshold, win tokens and stale items, and what `me` reports about an item.
//!
//! memcached applies a meta request's flags in the order the client wrote them, printing as it
//! goes (`mg key t T30` shows the old lifetime, `mg key T30 t` the new one), so the encoder in
//! `protocol::meta` walks the flags and calls these rules at each one.

use crate::cache::{slab_class, ItemState, Keyspace, MetaEntry, ReadOpts, StoreMode, Ttl};
use crate::engine::Engine;

use super::exptime::ttl_from_exptime;

/// Whole seconds left before `expires_at`, rounded up (a fresh `T30` reads 30, as memcached's
/// one-second clock does).
pub fn remaining_secs(expires_at: u64, now_ms: u64) -> u64 {
    expires_at.saturating_sub(now_ms).div_ceil(1000)
}

/// What `t` shows for an entry: `None` without a deadline (memcached prints `-1`), else the
/// seconds left.
pub fn shown_ttl(engine: &Engine, e: &MetaEntry<'_>) -> Option<u64> {
    if e.expired() {
        // memcached stores a past deadline as "1 second after start" and prints it minus its
        // clock (uptime + 62 s) as an unsigned 32-bit number.
        let clock = engine.uptime_secs().wrapping_add(62) as u32;
        return Some(u64::from(1u32.wrapping_sub(clock)));
    }
    match e.expires_at() {
        0 => None,
        t => Some(remaining_secs(t, e.now_ms())),
    }
}

/// `R<exptime>`: whether the entry's remaining lifetime falls under the recache threshold.
/// memcached compares deadlines (`it->exptime < recache_time`): `R0` and past times never win.
pub fn under_recache(e: &MetaEntry<'_>, recache: i32) -> bool {
    if !e.expired() && e.expires_at() == 0 {
        return false;
    }
    let threshold = match ttl_from_exptime(i64::from(recache)) {
        Ttl::After(ms) => ms / 1000,
        Ttl::At(ms) if ms > e.now_ms() => remaining_secs(ms, e.now_ms()),
        _ => return false,
    };
    e.expired() || remaining_secs(e.expires_at(), e.now_ms()) < threshold
}

/// The last flags of an `mg` hit, in memcached's order: `Z` (someone already won), `X` (stale),
/// `W` (this client wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WinFlags {
    pub z: bool,
    pub x: bool,
    pub w: bool,
}

/// Settles the win token at the end of an `mg`: a client wins when a flag made it win (`N` on a
/// vivify, `R` under the threshold) or the item is stale and nobody won yet. A client never
/// sees `W` with `Z`. The win is recorded on the entry.
pub fn settle_win(e: &mut MetaEntry<'_>, before: ItemState, won: bool) -> WinFlags {
    let w = (won || before.stale) && !before.win_sent;
    if w {
        e.take_win();
    }
    WinFlags {
        z: before.win_sent,
        x: before.stale,
        w,
    }
}

/// The read an `mg` makes: counted as a touch when it sets a lifetime (but a miss is a get
/// miss), an access unless `no_bump`, and a vivify on a miss when `vivify`.
pub fn mg_opts(touch: bool, no_bump: bool, vivify: bool, binary_key: bool) -> ReadOpts {
    use crate::cache::{Bump, Counted};
    ReadOpts {
        counted: if touch {
            Counted::MetaTouch
        } else {
            Counted::Get
        },
        bump: if no_bump { Bump::No } else { Bump::Read },
        vivify: vivify.then_some(binary_key),
        writes: true,
    }
}

/// The CAS unique an `ms` compares: set and replace become a compare-and-swap, append and
/// prepend compare it, and an add ignores it.
pub fn ms_cas(mode: StoreMode, cas: Option<u64>) -> Option<u64> {
    if mode == StoreMode::Add {
        None
    } else {
        cas
    }
}

/// What `me` reports about an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debug {
    /// Seconds left, or `None` without a deadline (memcached prints `exp=-1`, else minus the
    /// seconds left).
    pub exp: Option<u64>,
    pub state: ItemState,
    pub cas: u64,
    /// The slab class an item of this size would occupy in a default memcached.
    pub class: usize,
    /// memcached's item size ([`memcached_item_size`]).
    pub size: usize,
}

impl Engine {
    /// `mg`: a read with the options [`mg_opts`] makes; `f` applies the request's flags to
    /// the entry, in their order.
    pub fn meta_get<R>(
        &self,
        key: &[u8],
        opts: ReadOpts,
        f: impl FnOnce(&mut MetaEntry<'_>) -> R,
    ) -> Option<R> {
        self.cache().read(key, opts, f)
    }

    /// `me <key>`: the item's debug facts, without counting a read.
    pub fn meta_debug(&self, key: &[u8]) -> Option<Debug> {
        self.cache().read(key, ReadOpts::PEEK, |e| {
            let size = self.item_size(key.len(), e.value().len(), e.flags());
            Debug {
                exp: match e.expires_at() {
                    0 => None,
                    t => Some(remaining_secs(t, e.now_ms())),
                },
                state: e.state(),
                cas: e.cas(),
                class: slab_class(size),
                size,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_seconds_round_up() {
        assert_eq!(remaining_secs(1_000, 0), 1);
        assert_eq!(remaining_secs(1_001, 0), 2);
        assert_eq!(remaining_secs(30_000, 0), 30);
        assert_eq!(remaining_secs(5, 10), 0);
    }

    #[test]
    fn an_add_ignores_a_cas_and_the_rest_compare_it() {
        assert_eq!(ms_cas(StoreMode::Add, Some(5)), None);
        for m in [
            StoreMode::Set,
            StoreMode::Replace,
            StoreMode::Append,
            StoreMode::Prepend,
        ] {
            assert_eq!(ms_cas(m, Some(5)), Some(5));
        }
    }
}
