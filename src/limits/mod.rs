//! Per-key limits that every worker process shares: request rates, connections and requests
//! in flight, counted per key (an identity, a client address, any text with variables).
//!
//! - [`rate`]: a request rate per key (the generic cell rate algorithm, GCRA), with a burst;
//! - [`count`]: two counters per key, connections and requests in flight, each with a maximum;
//! - [`key`]: the key's template (`$cql_principal`, `$remote_addr`, ...) and its rendering;
//! - `table`: the layout both kinds of zone share (a header of magic, slots and seed, then
//!   the slots in windows of one cache line).
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
mod table;

pub use count::{CountVerdict, CountZone, Counter, Slot, MAX_COUNT};
pub use key::{IdentityValues, IdentityVar, KeyTemplate, Part};
pub use rate::{Rate, RateVerdict, RateZone, MAX_AHEAD_US};

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
