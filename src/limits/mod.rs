//! Per-key limits that every worker process shares: request rates, connections and requests
//! in flight, counted per key (an identity, a client address, any text with variables).
//!
//! - [`rate`]: a request rate per key (the generic cell rate algorithm, GCRA), with a burst;
//! - [`count`]: two counters per key, connections and requests in flight, each with a maximum;
//! - [`key`]: the key's template (`$cql_principal`, `$remote_addr`, ...) and its rendering.
//!
//! A zone is a region of 64-bit atomic words: the NGINX layer hands the region of a
//! shared-memory zone, tests hand a leaked vector. A key's whole state is one word, so every
//! update is a single compare-and-swap: no lock, no allocation, nothing a worker that dies
//! mid-update could leave half written. Keys are hashed with the zone's seed (drawn when the
//! zone is created, read from its header by every worker); the hash picks a window of eight
//! words (one cache line) and a tag that tells the key's word from its neighbours'. Two keys
//! with the same tag in the same window share one limit: a collision makes a limit stricter,
//! never looser.
//!
//! A word whose key holds no state (an idle rate bucket, counters back at zero) is free for
//! any key to take, so a small zone serves many keys over time. When a key's window has no
//! free word, the answer is `Full` and the caller refuses: a limit fails closed.
//!
//! A zone laid out by an earlier configuration with the same size is kept as it is
//! ([`RateZone::attach`], [`CountZone::attach`]): `nginx -s reload` loses no limit's state.

pub mod count;
pub mod key;
pub mod rate;

pub use count::{CountVerdict, CountZone, Counter, Slot, MAX_COUNT};
pub use key::{IdentityValues, IdentityVar, KeyTemplate, Part};
pub use rate::{Rate, RateVerdict, RateZone, MAX_AHEAD_US};

use std::hash::Hasher;

/// Words of a zone's header (one cache line): the slots start on a line of their own.
const HEADER_WORDS: usize = 8;
/// Slots one key may be found in: one cache line of words.
const WINDOW: usize = 8;
/// The fewest slots a zone has.
const MIN_SLOTS: usize = 64;
/// The most slots a zone uses (16 GiB of words); a larger region's rest stays unused.
const MAX_SLOTS: usize = 1 << 31;

/// The slots a region of `words` words holds after the header, whole windows only; `None`
/// when fewer than [`MIN_SLOTS`].
fn slots_in(words: usize) -> Option<usize> {
    let slots = (words.checked_sub(HEADER_WORDS)? / WINDOW * WINDOW).min(MAX_SLOTS);
    (slots >= MIN_SLOTS).then_some(slots)
}

/// A key's hash under a zone's seed: the same in every process of one binary.
fn keyed_hash(seed: u64, key: &[u8]) -> u64 {
    // SipHash with fixed keys: the seed, fed first, keys it.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write_u64(seed);
    h.write(key);
    h.finish()
}

/// The first slot of the window of `hash` among `slots` slots (a multiple of [`WINDOW`]).
fn window_of(hash: u64, slots: usize) -> usize {
    let windows = (slots / WINDOW) as u64;
    // The low 32 bits spread over the windows; the tags come from the high bits.
    let window = ((hash & 0xffff_ffff) * windows) >> 32;
    HEADER_WORDS + window as usize * WINDOW
}

/// A region of `words` zeroed words that lives as long as the test process.
#[cfg(test)]
fn leaked(words: usize) -> &'static [core::sync::atomic::AtomicU64] {
    Box::leak(
        (0..words)
            .map(|_| core::sync::atomic::AtomicU64::new(0))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    )
}
