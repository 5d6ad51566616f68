//! The counters' memory: one region of 64-bit atomic words that every worker counts into.
//!
//! The NGINX layer hands the region of a shared-memory zone ([`Zone::attach`]); tests hand
//! a leaked vector. Nothing here takes a lock: a count is one relaxed `fetch_add`, and each
//! worker counts into a stripe of its own ([`set_worker`]), so two workers do not fight over
//! a cache line. The exposition adds the stripes up.
//!
//! ```text
//! header | global stripes | server names | role names | keyspace names
//!        | per server: stripes of its counters | per server: denials[role][keyspace]
//! ```
//!
//! A name slot is a state word and 56 bytes. Servers are named once, by the master process,
//! when the zone is set up for a configuration; roles and keyspaces are named by the workers
//! as they are first denied something, with a compare-and-swap on the state word, up to the
//! configured number: later ones count as `other`.
//!
//! A zone set up by an earlier configuration with the same layout (`nginx -s reload` keeps
//! a zone of the same name and size) is kept as it is: no count is lost.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::labels::{
    Cache, CacheEvent, Decision, DenialReason, LabelSet, Login, Method, Outcome, Peer,
    RequestCategory, Violation, HISTOGRAM_WORDS,
};

/// How many stripes each server's counters have; worker `n` counts into stripe `n % STRIPES`.
pub const STRIPES: usize = 8;
/// The longest server, role or keyspace name a slot holds; longer ones count as `other`.
pub const NAME_BYTES: usize = 56;
const SLOT_WORDS: usize = 1 + NAME_BYTES / 8;
const HEADER_WORDS: usize = 8;
const GLOBAL_WORDS: usize = 8;
const MAGIC: u64 = u64::from_be_bytes(*b"cqlmetr1");

/// A name slot's state word: empty, being written, or ready (with the length above bit 8).
const EMPTY: u64 = 0;
const WRITING: u64 = 1;
const READY: u64 = 2;

/// Offsets of the counters within one stripe of a server.
pub(super) mod server {
    use super::*;

    pub const CONNECTIONS_OPENED: usize = 0;
    pub const CONNECTIONS_CLOSED: usize = 1;
    pub const LOGINS: usize = 2;
    pub const REQUESTS: usize = LOGINS + Method::COUNT * Login::COUNT;
    pub const DENIAL_REASONS: usize = REQUESTS + RequestCategory::COUNT * Decision::COUNT;
    pub const WOULD_DENY_REASONS: usize = DENIAL_REASONS + DenialReason::COUNT;
    pub const RESPONSES: usize = WOULD_DENY_REASONS + DenialReason::COUNT;
    pub const UNPREPARED: usize = RESPONSES + Outcome::COUNT;
    pub const RESPONSE_LATENCY: usize = UNPREPARED + 1;
    pub const HANDSHAKE_LATENCY: usize = RESPONSE_LATENCY + HISTOGRAM_WORDS;
    pub const CACHES: usize = HANDSHAKE_LATENCY + Method::COUNT * HISTOGRAM_WORDS;
    pub const VIOLATIONS: usize = CACHES + Cache::COUNT * CacheEvent::COUNT;
    pub const BYTES: usize = VIOLATIONS + Violation::COUNT;
    const END: usize = BYTES + Peer::COUNT;
    /// Words of one stripe, rounded up to whole cache lines.
    pub const WORDS: usize = END.div_ceil(8) * 8;
}

/// Offsets of the counters of the zone as a whole (the audit log is not a server's).
pub(super) mod global {
    pub const AUDIT_LINES: usize = 0;
    pub const AUDIT_LINES_LOST: usize = 1;
}

/// Where everything lives in a region, for a number of servers, roles and keyspaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub servers: usize,
    pub roles: usize,
    pub keyspaces: usize,
}

impl Layout {
    fn global(&self) -> usize {
        HEADER_WORDS
    }
    fn server_names(&self) -> usize {
        self.global() + STRIPES * GLOBAL_WORDS
    }
    fn role_names(&self) -> usize {
        self.server_names() + self.servers * SLOT_WORDS
    }
    fn keyspace_names(&self) -> usize {
        self.role_names() + self.roles * SLOT_WORDS
    }
    fn counters(&self) -> usize {
        self.keyspace_names() + self.keyspaces * SLOT_WORDS
    }
    fn denials(&self) -> usize {
        self.counters() + self.servers * STRIPES * server::WORDS
    }
    /// Denial counters of one server: roles and `other`, by keyspaces and `other`.
    fn denial_cells(&self) -> usize {
        (self.roles + 1) * (self.keyspaces + 1)
    }

    /// Words the layout takes.
    pub fn words(&self) -> usize {
        self.denials() + self.servers * self.denial_cells()
    }

    /// Bytes the layout takes.
    pub fn bytes(&self) -> usize {
        self.words() * 8
    }

    /// The layout with as many servers as `words` hold, if it holds one.
    pub fn fitting(words: usize, roles: usize, keyspaces: usize) -> Option<Layout> {
        let none = Layout {
            servers: 0,
            roles,
            keyspaces,
        };
        let per_server = SLOT_WORDS + STRIPES * server::WORDS + none.denial_cells();
        let servers = words.checked_sub(none.words())? / per_server;
        (servers > 0).then_some(Layout { servers, ..none })
    }

    /// The word of counter `offset` of a server's stripe.
    fn server_word(&self, slot: usize, stripe: usize, offset: usize) -> usize {
        self.counters() + (slot * STRIPES + stripe % STRIPES) * server::WORDS + offset
    }

    fn global_word(&self, stripe: usize, offset: usize) -> usize {
        self.global() + (stripe % STRIPES) * GLOBAL_WORDS + offset
    }

    fn denial_word(&self, slot: usize, role: usize, keyspace: usize) -> usize {
        self.denials() + slot * self.denial_cells() + role * (self.keyspaces + 1) + keyspace
    }
}

/// The stripe this process counts into.
static STRIPE: AtomicUsize = AtomicUsize::new(0);

/// Called once in each worker process with its number (NGINX's `ngx_worker`).
pub fn set_worker(worker: usize) {
    STRIPE.store(worker % STRIPES, Ordering::Relaxed);
}

pub(super) fn stripe() -> usize {
    STRIPE.load(Ordering::Relaxed)
}

/// A region of counters with its layout.
#[derive(Clone, Copy)]
pub struct Zone {
    words: &'static [AtomicU64],
    layout: Layout,
}

impl core::fmt::Debug for Zone {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Zone")
            .field("layout", &self.layout)
            .finish()
    }
}

/// Which name table a name goes in.
#[derive(Clone, Copy)]
enum Table {
    Servers,
    Roles,
    Keyspaces,
}

impl Zone {
    /// Lays the counters out over `words`: kept as they are if an earlier configuration laid
    /// them out the same way, else zeroed. `None` if the region holds no server.
    pub fn attach(words: &'static [AtomicU64], roles: usize, keyspaces: usize) -> Option<Zone> {
        let layout = Layout::fitting(words.len(), roles, keyspaces)?;
        let zone = Zone { words, layout };
        // The stripe's size too: a build with other counters lays them out otherwise.
        let header = [
            MAGIC,
            layout.servers as u64,
            layout.roles as u64,
            layout.keyspaces as u64,
            server::WORDS as u64,
        ];
        let same = header.iter().enumerate().all(|(i, &v)| zone.load(i) == v);
        if !same {
            for word in words.get(..layout.words())? {
                word.store(0, Ordering::Relaxed);
            }
            for (i, v) in header.into_iter().enumerate().skip(1) {
                zone.store(i, v);
            }
            // The magic goes last: a half-written header is not mistaken for a whole one.
            zone.store(0, MAGIC);
        }
        Some(zone)
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    fn load(&self, i: usize) -> u64 {
        self.words.get(i).map_or(0, |w| w.load(Ordering::Relaxed))
    }

    fn store(&self, i: usize, v: u64) {
        if let Some(w) = self.words.get(i) {
            w.store(v, Ordering::Relaxed);
        }
    }

    fn add(&self, i: usize, n: u64) {
        if let Some(w) = self.words.get(i) {
            w.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn slots(&self, table: Table) -> (usize, usize) {
        let l = &self.layout;
        match table {
            Table::Servers => (l.server_names(), l.servers),
            Table::Roles => (l.role_names(), l.roles),
            Table::Keyspaces => (l.keyspace_names(), l.keyspaces),
        }
    }

    /// The slot of `name` in a table, taking a free one if it is not there yet; `None` when
    /// the table is full or the name does not fit a slot.
    fn intern(&self, table: Table, name: &str) -> Option<usize> {
        if name.is_empty() || name.len() > NAME_BYTES {
            return None;
        }
        let packed = pack(name);
        let ready = READY | ((name.len() as u64) << 8);
        let (base, count) = self.slots(table);
        for slot in 0..count {
            let at = base + slot * SLOT_WORDS;
            let state = self.words.get(at)?;
            // A slot another worker is writing is ready within a few stores; a worker that
            // died in between leaves it unusable, and the name counts as `other`.
            let mut spins = 0u32;
            loop {
                match state.load(Ordering::Acquire) {
                    EMPTY => {
                        if state
                            .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Acquire)
                            .is_ok()
                        {
                            for (i, word) in packed.iter().enumerate() {
                                self.store(at + 1 + i, *word);
                            }
                            state.store(ready, Ordering::Release);
                            return Some(slot);
                        }
                    }
                    WRITING if spins < 10_000 => {
                        spins += 1;
                        core::hint::spin_loop();
                    }
                    WRITING => return None,
                    s if s == ready && self.name_words(at) == packed => return Some(slot),
                    _ => break,
                }
            }
        }
        None
    }

    fn name_words(&self, at: usize) -> [u64; SLOT_WORDS - 1] {
        core::array::from_fn(|i| self.load(at + 1 + i))
    }

    /// The name in a slot, if it holds one.
    fn name(&self, table: Table, slot: usize) -> Option<String> {
        let (base, count) = self.slots(table);
        if slot >= count {
            return None;
        }
        let at = base + slot * SLOT_WORDS;
        let state = self.words.get(at)?.load(Ordering::Acquire);
        if state & 0xff != READY {
            return None;
        }
        let len = usize::try_from(state >> 8).ok()?.min(NAME_BYTES);
        let bytes: Vec<u8> = self
            .name_words(at)
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .take(len)
            .collect();
        String::from_utf8(bytes).ok()
    }

    /// The slot of a server by name, taken if it is new. Called by the master process while
    /// it sets the zone up, never by two processes at once.
    pub fn server_slot(&self, name: &str) -> Option<usize> {
        self.intern(Table::Servers, name)
    }

    /// The servers the zone has counters of, with their slots.
    pub fn servers(&self) -> Vec<(usize, String)> {
        (0..self.layout.servers)
            .filter_map(|slot| Some((slot, self.name(Table::Servers, slot)?)))
            .collect()
    }

    /// The roles named so far, with their slots.
    pub(super) fn roles(&self) -> Vec<(usize, String)> {
        (0..self.layout.roles)
            .filter_map(|slot| Some((slot, self.name(Table::Roles, slot)?)))
            .collect()
    }

    /// The keyspaces named so far, with their slots.
    pub(super) fn keyspaces(&self) -> Vec<(usize, String)> {
        (0..self.layout.keyspaces)
            .filter_map(|slot| Some((slot, self.name(Table::Keyspaces, slot)?)))
            .collect()
    }

    /// The counters of a server, all stripes: stripe `s` holds counter `offset` at
    /// `s * server::WORDS + offset`.
    pub(super) fn server_block(&self, slot: usize) -> Option<&'static [AtomicU64]> {
        if slot >= self.layout.servers {
            return None;
        }
        let start = self.layout.server_word(slot, 0, 0);
        self.words.get(start..start + STRIPES * server::WORDS)
    }

    /// Audit lines handed to an audit log, and how many of them it could not write.
    pub fn audit_lines(&self, written: u64, lost: u64) {
        self.count_global(global::AUDIT_LINES, written);
        self.count_global(global::AUDIT_LINES_LOST, lost);
    }

    /// Adds `n` to a counter of the zone as a whole.
    pub(super) fn count_global(&self, offset: usize, n: u64) {
        if offset < GLOBAL_WORDS {
            self.add(self.layout.global_word(stripe(), offset), n);
        }
    }

    /// Counts a denial of `role` on `keyspace` (`None`: none); names past the configured
    /// number count as `other`.
    pub(super) fn count_denial(&self, slot: usize, role: Option<&str>, keyspace: Option<&str>) {
        if slot >= self.layout.servers {
            return;
        }
        let role = role.map_or(self.layout.roles + 1, |name| {
            self.intern(Table::Roles, name).unwrap_or(self.layout.roles)
        });
        let keyspace = keyspace.map_or(self.layout.keyspaces + 1, |name| {
            self.intern(Table::Keyspaces, name)
                .unwrap_or(self.layout.keyspaces)
        });
        // `none` shares the `other` cell: both are "no name we keep".
        let role = role.min(self.layout.roles);
        let keyspace = keyspace.min(self.layout.keyspaces);
        self.add(self.layout.denial_word(slot, role, keyspace), 1);
    }

    /// A server's counter, all stripes added up.
    pub(super) fn sum(&self, slot: usize, offset: usize) -> u64 {
        (0..STRIPES)
            .map(|stripe| self.load(self.layout.server_word(slot, stripe, offset)))
            .fold(0, u64::wrapping_add)
    }

    /// A counter of the zone as a whole, all stripes added up.
    pub(super) fn sum_global(&self, offset: usize) -> u64 {
        (0..STRIPES)
            .map(|stripe| self.load(self.layout.global_word(stripe, offset)))
            .fold(0, u64::wrapping_add)
    }

    /// A server's denials of a role slot on a keyspace slot (the last of each is `other`).
    pub(super) fn denials(&self, slot: usize, role: usize, keyspace: usize) -> u64 {
        self.load(self.layout.denial_word(slot, role, keyspace))
    }
}

/// A name's bytes in little-endian words, zero-padded.
fn pack(name: &str) -> [u64; SLOT_WORDS - 1] {
    let mut bytes = [0u8; NAME_BYTES];
    for (b, n) in bytes.iter_mut().zip(name.bytes()) {
        *b = n;
    }
    core::array::from_fn(|i| {
        let mut word = [0u8; 8];
        if let Some(chunk) = bytes.get(i * 8..i * 8 + 8) {
            word.copy_from_slice(chunk);
        }
        u64::from_le_bytes(word)
    })
}

/// A region of `words` zeroed words that lives as long as the test process.
#[cfg(test)]
pub(crate) fn leaked(words: usize) -> &'static [AtomicU64] {
    Box::leak(
        (0..words)
            .map(|_| AtomicU64::new(0))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_fits_its_region() {
        let layout = Layout::fitting(100_000, 32, 32).expect("fits");
        assert!(layout.words() <= 100_000);
        let more = Layout {
            servers: layout.servers + 1,
            ..layout
        };
        assert!(more.words() > 100_000, "as many servers as fit");
        assert_eq!(Layout::fitting(100, 32, 32), None);
    }

    #[test]
    fn names_are_interned_once_and_the_table_fills_up() {
        let zone = Zone::attach(leaked(60_000), 2, 2).expect("zone");
        let a = zone.intern(Table::Roles, "reader");
        assert_eq!(a, Some(0));
        assert_eq!(zone.intern(Table::Roles, "writer"), Some(1));
        assert_eq!(zone.intern(Table::Roles, "reader"), a);
        assert_eq!(zone.intern(Table::Roles, "third"), None, "full");
        assert_eq!(zone.intern(Table::Roles, &"x".repeat(57)), None, "too long");
        assert_eq!(zone.name(Table::Roles, 1).as_deref(), Some("writer"));
        assert_eq!(zone.roles().len(), 2);
    }

    #[test]
    fn a_zone_of_the_same_layout_keeps_its_counts() {
        let words = leaked(60_000);
        let zone = Zone::attach(words, 4, 4).expect("zone");
        let slot = zone.server_slot("127.0.0.1:9042").expect("slot");
        let meter = super::super::ServerMeter::default();
        meter.bind(zone, slot);
        meter.count(server::CONNECTIONS_OPENED, 3);
        let again = Zone::attach(words, 4, 4).expect("zone");
        assert_eq!(again.server_slot("127.0.0.1:9042"), Some(slot));
        assert_eq!(again.sum(slot, server::CONNECTIONS_OPENED), 3);
        // Another layout starts from zero.
        let other = Zone::attach(words, 8, 4).expect("zone");
        assert_eq!(other.servers(), vec![]);
        assert_eq!(other.sum(0, server::CONNECTIONS_OPENED), 0);
    }

    #[test]
    fn stripes_add_up() {
        let zone = Zone::attach(leaked(60_000), 4, 4).expect("zone");
        let slot = zone.server_slot("s").expect("slot");
        let meter = super::super::ServerMeter::default();
        meter.bind(zone, slot);
        for worker in 0..STRIPES + 2 {
            set_worker(worker);
            meter.count(server::BYTES, 10);
        }
        set_worker(0);
        assert_eq!(zone.sum(slot, server::BYTES), 10 * (STRIPES as u64 + 2));
    }

    #[test]
    fn denials_past_the_limit_count_as_other() {
        let zone = Zone::attach(leaked(60_000), 1, 1).expect("zone");
        zone.count_denial(0, Some("a"), Some("ks"));
        zone.count_denial(0, Some("b"), Some("ks"));
        zone.count_denial(0, None, Some("other_ks"));
        assert_eq!(zone.denials(0, 0, 0), 1);
        assert_eq!(zone.denials(0, 1, 0), 1, "role b is other");
        assert_eq!(zone.denials(0, 1, 1), 1, "no role, keyspace other");
    }

    #[test]
    fn concurrent_interning_gives_one_slot_per_name() {
        let zone = Zone::attach(leaked(200_000), 16, 16).expect("zone");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    (0..16)
                        .map(|i| zone.intern(Table::Keyspaces, &format!("ks{i}")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let results: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().expect("join"))
            .collect();
        assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
        assert_eq!(zone.keyspaces().len(), 16);
    }
}
