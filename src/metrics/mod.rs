//! Metrics: what the gate decides and what it costs, counted into memory all workers share
//! and rendered in the Prometheus text format. No NGINX types.
//!
//! - [`labels`]: the fixed label sets (login outcomes, categories, decisions, error codes, ...);
//! - [`zone`]: the layout of the counters in a region of atomic words, and their names;
//! - [`render`]: the exposition a scrape reads.
//!
//! A server's sessions count through its [`ServerMeter`], which the NGINX layer binds to the
//! zone's memory and the server's slot once the zone exists; until then, and for a server
//! without a zone, counting does nothing.

pub mod labels;
pub mod render;
pub mod zone;

use core::cell::Cell;
use core::sync::atomic::{AtomicU64, Ordering};

pub use labels::{
    Cache, CacheEvent, Decision, DenialReason, LabelSet, Login, Method, Outcome, Peer,
    RequestCategory, Violation,
};
pub use zone::{set_worker, Layout, Zone};

use labels::HISTOGRAM_WORDS;
use zone::server;

/// What a cache of one worker did so far; the session counts the difference each lookup
/// makes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
}

/// The counters of one server block: a zone and the server's slot in it.
#[derive(Default)]
pub struct ServerMeter {
    bound: Cell<Option<(Zone, usize)>>,
    /// The server's counters in the zone (all stripes), for the counts of the data path.
    block: Cell<Option<&'static [AtomicU64]>>,
}

impl core::fmt::Debug for ServerMeter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerMeter")
            .field("bound", &self.bound.get())
            .finish_non_exhaustive()
    }
}

impl ServerMeter {
    /// Counts into `zone`, as the server of `slot`.
    pub fn bind(&self, zone: Zone, slot: usize) {
        self.bound.set(Some((zone, slot)));
        self.block.set(zone.server_block(slot));
    }

    fn count(&self, offset: usize, n: u64) {
        if let Some(block) = self.block.get() {
            if let Some(word) = block.get(zone::stripe() * server::WORDS + offset) {
                word.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    fn observe(&self, histogram: usize, us: u64) {
        self.count(histogram + labels::bucket(us), 1);
        self.count(histogram + HISTOGRAM_WORDS - 1, us);
    }

    pub fn connection_opened(&self) {
        self.count(server::CONNECTIONS_OPENED, 1);
    }

    pub fn connection_closed(&self) {
        self.count(server::CONNECTIONS_CLOSED, 1);
    }

    /// A login ended; `handshake_us` is how long it took, for a successful one.
    pub fn login(&self, method: Method, outcome: Login, handshake_us: Option<u64>) {
        self.count(
            server::LOGINS + method.index() * Login::COUNT + outcome.index(),
            1,
        );
        if let Some(us) = handshake_us {
            self.observe(
                server::HANDSHAKE_LATENCY + method.index() * HISTOGRAM_WORDS,
                us,
            );
        }
    }

    /// A request was decided.
    pub fn request(&self, category: RequestCategory, decision: Decision) {
        self.count(
            server::REQUESTS + category.index() * Decision::COUNT + decision.index(),
            1,
        );
        if decision == Decision::Unprepared {
            self.count(server::UNPREPARED, 1);
        }
    }

    /// A request was denied, and why.
    pub fn denied(&self, reason: DenialReason) {
        self.count(server::DENIAL_REASONS + reason.index(), 1);
    }

    /// A request (or a login's connection) the gate would have refused for this reason,
    /// forwarded because the server is in dry run (`cql_dry_run on`).
    pub fn would_deny(&self, reason: DenialReason) {
        self.count(server::WOULD_DENY_REASONS + reason.index(), 1);
    }

    /// A policy denial of an identity with these roles (each counted once; none counts as
    /// `other`) on `keyspace`. The keyspace is the client's word: a name Cassandra would not
    /// accept as a keyspace (up to 48 letters, digits and underscores) counts as `other`, so
    /// that no client writes quotes or line feeds into a label.
    pub fn denied_by<'a>(&self, roles: impl Iterator<Item = &'a str>, keyspace: Option<&str>) {
        let keyspace = keyspace.filter(|name| is_keyspace_name(name));
        if let Some((zone, slot)) = self.bound.get() {
            let mut any = false;
            for role in roles {
                any = true;
                zone.count_denial(slot, Some(role), keyspace);
            }
            if !any {
                zone.count_denial(slot, None, keyspace);
            }
        }
    }

    /// Cassandra answered a request the proxy forwarded, `us` after it went on.
    pub fn response(&self, outcome: Outcome, us: Option<u64>) {
        self.count(server::RESPONSES + outcome.index(), 1);
        if let Some(us) = us {
            self.observe(server::RESPONSE_LATENCY, us);
        }
    }

    /// One lookup of a cache, and whether it found an entry.
    pub fn cache_lookup(&self, cache: Cache, hit: bool) {
        let event = if hit {
            CacheEvent::Hit
        } else {
            CacheEvent::Miss
        };
        self.count(
            server::CACHES + cache.index() * CacheEvent::COUNT + event.index(),
            1,
        );
    }

    /// What a cache did between two of its [`CacheStats`].
    pub fn cache(&self, cache: Cache, before: CacheStats, after: CacheStats) {
        let base = server::CACHES + cache.index() * CacheEvent::COUNT;
        // The usual lookup: one hit, nothing else.
        if before.misses == after.misses && before.evictions == after.evictions {
            if after.hits != before.hits {
                self.count(
                    base + CacheEvent::Hit.index(),
                    after.hits.wrapping_sub(before.hits),
                );
            }
            return;
        }
        for (event, (was, is)) in [
            (CacheEvent::Hit, (before.hits, after.hits)),
            (CacheEvent::Miss, (before.misses, after.misses)),
            (CacheEvent::Eviction, (before.evictions, after.evictions)),
        ] {
            if is != was {
                self.count(base + event.index(), is.wrapping_sub(was));
            }
        }
    }

    /// A connection ended for a protocol violation.
    pub fn violation(&self, kind: Violation) {
        self.count(server::VIOLATIONS + kind.index(), 1);
    }

    /// Bytes received from a peer.
    pub fn bytes(&self, from: Peer, n: u64) {
        self.count(server::BYTES + from.index(), n);
    }

    /// Whether counts go anywhere.
    pub fn is_bound(&self) -> bool {
        self.block.get().is_some()
    }
}

/// Whether Cassandra accepts `name` as a keyspace name: 1 to 48 ASCII letters, digits and
/// underscores.
fn is_keyspace_name(name: &str) -> bool {
    (1..=48).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyspace_label_is_a_name_cassandra_accepts() {
        assert!(is_keyspace_name("shop_2"));
        assert!(!is_keyspace_name("shop\"}\nfake 1"));
        assert!(!is_keyspace_name(&"k".repeat(49)));
        assert!(!is_keyspace_name(""));
    }
}
