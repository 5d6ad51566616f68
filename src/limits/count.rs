//! Connections and requests in flight per key: two counters in one word per key.
//!
//! ```text
//! header: magic | slots | seed | (unused up to one cache line)
//! slots:  tag (32 bits) | connections (16 bits) | requests in flight (16 bits)
//! ```
//!
//! An acquire adds one to a counter unless it is at its maximum, a release takes one off;
//! both are one compare-and-swap. A word whose two counters are zero holds nothing: any
//! key may take it, so a key's word is free again as soon as its last connection closes.
//!
//! Two first acquires of one key may, in a rare race with a third key freeing a word of
//! the same window, take two words: the key's later acquires all count on the first of
//! them, and the second is free again once the acquire that took it is released.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use super::table::Table;

const MAGIC: u64 = u64::from_be_bytes(*b"cqlconn1");

const TAG_SHIFT: u32 = 32;
const FIELD: u64 = 0xffff;
const COUNTERS: u64 = 0xffff_ffff;

/// The largest maximum a counter holds; a larger one is used as this one.
pub const MAX_COUNT: u32 = FIELD as u32;

/// Which of a key's two counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Open connections (`cql_limit_conn`).
    Connections,
    /// Requests sent upstream and not answered yet (`cql_limit_in_flight`).
    InFlight,
}

impl Counter {
    fn shift(self) -> u32 {
        match self {
            Counter::Connections => 16,
            Counter::InFlight => 0,
        }
    }
}

/// What an acquire holds: the caller keeps it to release it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    index: usize,
    tag: u32,
}

/// What a count zone says to one acquire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountVerdict {
    /// Counted: release the slot when the connection closes or the request is answered.
    Held(Slot),
    /// The key already holds its maximum, `current`.
    Limited { current: u32 },
    /// Every word of the key's window holds another key's counts: refuse.
    Full,
}

/// A region of per-key counters.
#[derive(Clone, Copy)]
pub struct CountZone {
    table: Table,
}

impl fmt::Debug for CountZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountZone")
            .field("slots", &self.table.slots())
            .finish()
    }
}

impl CountZone {
    /// The words a region of `bytes` bytes holds.
    pub fn words_for_bytes(bytes: usize) -> usize {
        Table::words_for_bytes(bytes)
    }

    /// Lays a fresh zone out over `words`: every counter zero, keys hashed with `seed`.
    /// `None` when the region holds fewer than 64 keys.
    pub fn create(words: &'static [AtomicU64], seed: u64) -> Option<CountZone> {
        let table = Table::create(words, MAGIC, seed)?;
        Some(CountZone { table })
    }

    /// The zone an earlier configuration laid out over `words`, every count kept; `None`
    /// when the region holds no count zone of this size.
    pub fn attach(words: &'static [AtomicU64]) -> Option<CountZone> {
        let table = Table::attach(words, MAGIC)?;
        Some(CountZone { table })
    }

    /// How many keys the zone holds at most.
    pub fn slots(&self) -> usize {
        self.table.slots()
    }

    /// The hash of a key in this zone (its seed's): computed once per key, kept by the caller.
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.table.hash(key)
    }

    /// Adds one to `counter` of the key of `hash` unless it already holds `max` (at most
    /// [`MAX_COUNT`]).
    pub fn acquire(&self, hash: u64, counter: Counter, max: u32) -> CountVerdict {
        let max = u64::from(max.min(MAX_COUNT));
        let tag = tag_of(hash);
        let shift = counter.shift();
        let Some((base, window)) = self.table.window(hash) else {
            return CountVerdict::Full;
        };
        // Each failed exchange is another acquire's or release's success: this ends.
        loop {
            let mut mine = None;
            let mut free = None;
            for (i, word) in window.iter().enumerate() {
                let w = word.load(Ordering::Relaxed);
                if w >> TAG_SHIFT == tag {
                    mine = Some((i, word, w));
                    break;
                }
                if free.is_none() && w & COUNTERS == 0 {
                    free = Some((i, word, w));
                }
            }
            let Some((i, word, w)) = mine.or(free) else {
                return CountVerdict::Full;
            };
            let held = if w >> TAG_SHIFT == tag {
                w & COUNTERS
            } else {
                0
            };
            let current = (held >> shift) & FIELD;
            if current >= max {
                return CountVerdict::Limited {
                    current: current as u32,
                };
            }
            let next = (tag << TAG_SHIFT) | (held + (1 << shift));
            if word
                .compare_exchange_weak(w, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return CountVerdict::Held(Slot {
                    index: base + i,
                    tag: tag as u32,
                });
            }
        }
    }

    /// Takes one off `counter` of the key that acquired `slot`. Never below zero; nothing
    /// when the word holds another key by now.
    pub fn release(&self, slot: Slot, counter: Counter) {
        let Some(word) = self.table.slot(slot.index) else {
            return;
        };
        let shift = counter.shift();
        loop {
            let w = word.load(Ordering::Relaxed);
            if w >> TAG_SHIFT != u64::from(slot.tag) || (w >> shift) & FIELD == 0 {
                return;
            }
            let next = w - (1 << shift);
            if word
                .compare_exchange_weak(w, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    /// What `counter` of the key of `hash` holds now.
    pub fn current(&self, hash: u64, counter: Counter) -> u32 {
        let tag = tag_of(hash);
        let Some((_, window)) = self.table.window(hash) else {
            return 0;
        };
        window
            .iter()
            .map(|word| word.load(Ordering::Relaxed))
            .filter(|w| w >> TAG_SHIFT == tag)
            .map(|w| ((w >> counter.shift()) & FIELD) as u32)
            .sum()
    }
}

/// A key's tag: the hash's high half, never 0.
fn tag_of(hash: u64) -> u64 {
    (hash >> TAG_SHIFT).max(1)
}

#[cfg(test)]
mod tests {
    use super::super::leaked;
    use super::*;
    use core::sync::atomic::AtomicUsize;

    fn zone(words: usize) -> CountZone {
        CountZone::create(leaked(words), 0x5eed).expect("zone")
    }

    fn held(v: CountVerdict) -> Slot {
        match v {
            CountVerdict::Held(slot) => slot,
            other => panic!("not held: {other:?}"),
        }
    }

    /// Acquires `counter` of the key of `hash` `max` times, each held, and one more, refused
    /// at `max`: the slots held.
    fn fill(z: &CountZone, hash: u64, counter: Counter, max: u32) -> Vec<Slot> {
        let slots = (0..max)
            .map(|_| held(z.acquire(hash, counter, max)))
            .collect();
        assert_eq!(
            z.acquire(hash, counter, max),
            CountVerdict::Limited { current: max }
        );
        slots
    }

    /// A hash whose key lands in the first window with `tag`.
    fn in_first_window(tag: u64) -> u64 {
        tag << TAG_SHIFT
    }

    #[test]
    fn a_key_holds_up_to_its_maximum() {
        let z = zone(1024);
        let h = z.hash(b"alice");
        let slots = fill(&z, h, Counter::Connections, 3);
        assert_eq!(z.current(h, Counter::Connections), 3);
        z.release(slots[0], Counter::Connections);
        assert_eq!(z.current(h, Counter::Connections), 2);
        held(z.acquire(h, Counter::Connections, 3));
        assert_eq!(
            z.acquire(h, Counter::Connections, 3),
            CountVerdict::Limited { current: 3 }
        );
        // A lower maximum (another server's) refuses at once; a higher one lets in.
        assert_eq!(
            z.acquire(h, Counter::Connections, 1),
            CountVerdict::Limited { current: 3 }
        );
        held(z.acquire(h, Counter::Connections, 4));
        // Another key is not concerned.
        let other = z.hash(b"bob");
        held(z.acquire(other, Counter::Connections, 1));
        assert_eq!(z.current(other, Counter::Connections), 1);
        assert_eq!(z.current(z.hash(b"carol"), Counter::Connections), 0);
    }

    #[test]
    fn requests_in_flight_count_apart_from_connections() {
        let z = zone(1024);
        let h = z.hash(b"alice");
        let conn = held(z.acquire(h, Counter::Connections, 1));
        assert_eq!(
            z.acquire(h, Counter::Connections, 1),
            CountVerdict::Limited { current: 1 }
        );
        let requests = fill(&z, h, Counter::InFlight, 100);
        assert_eq!(z.current(h, Counter::Connections), 1);
        for slot in &requests {
            z.release(*slot, Counter::InFlight);
        }
        assert_eq!(z.current(h, Counter::InFlight), 0);
        assert_eq!(z.current(h, Counter::Connections), 1);
        z.release(conn, Counter::Connections);
        assert_eq!(z.current(h, Counter::Connections), 0);
    }

    #[test]
    fn a_maximum_is_at_most_what_a_counter_holds() {
        let z = zone(1024);
        let h = z.hash(b"alice");
        for _ in 0..MAX_COUNT {
            held(z.acquire(h, Counter::InFlight, u32::MAX));
        }
        assert_eq!(
            z.acquire(h, Counter::InFlight, u32::MAX),
            CountVerdict::Limited { current: MAX_COUNT }
        );
        assert_eq!(z.current(h, Counter::Connections), 0, "no carry");
        assert_eq!(
            z.acquire(h, Counter::Connections, 0),
            CountVerdict::Limited { current: 0 }
        );
    }

    #[test]
    fn releases_never_go_below_zero_nor_touch_another_key() {
        let z = zone(1024);
        let a = in_first_window(1);
        let slot = held(z.acquire(a, Counter::Connections, 5));
        z.release(slot, Counter::Connections);
        z.release(slot, Counter::Connections);
        z.release(slot, Counter::InFlight);
        assert_eq!(z.current(a, Counter::Connections), 0);
        // The word is free again: another key takes it, a stale release leaves it alone.
        let b = in_first_window(2);
        let taken = held(z.acquire(b, Counter::Connections, 5));
        assert_eq!(taken.index, slot.index, "the freed word was reused");
        z.release(slot, Counter::Connections);
        assert_eq!(z.current(b, Counter::Connections), 1);
        // A slot from a larger zone, or pointing at a header, does nothing either.
        z.release(
            Slot {
                index: 1 << 40,
                tag: 2,
            },
            Counter::Connections,
        );
        z.release(Slot { index: 1, tag: 2 }, Counter::Connections);
        assert_eq!(z.current(b, Counter::Connections), 1);
        assert_eq!(
            CountZone::attach(z.table.words()).map(|z| z.slots()),
            Some(z.slots())
        );
    }

    #[test]
    fn freed_words_serve_other_keys() {
        let z = zone(8 + 64);
        assert_eq!(z.slots(), 64);
        for i in 0..10_000u32 {
            let h = z.hash(format!("client-{i}").as_bytes());
            let slot = held(z.acquire(h, Counter::Connections, 1));
            let request = held(z.acquire(h, Counter::InFlight, 1));
            z.release(request, Counter::InFlight);
            z.release(slot, Counter::Connections);
        }
    }

    #[test]
    fn a_window_of_busy_keys_is_full_until_one_leaves() {
        let z = zone(1024);
        let slots: Vec<Slot> = (1..=8)
            .map(|tag| held(z.acquire(in_first_window(tag), Counter::Connections, 10)))
            .collect();
        let newcomer = in_first_window(9);
        assert_eq!(
            z.acquire(newcomer, Counter::Connections, 10),
            CountVerdict::Full
        );
        assert_eq!(
            z.acquire(newcomer, Counter::InFlight, 10),
            CountVerdict::Full
        );
        // A key with a request in flight still holds its word after its connection closed.
        let request = held(z.acquire(in_first_window(4), Counter::InFlight, 10));
        z.release(slots[3], Counter::Connections);
        assert_eq!(
            z.acquire(newcomer, Counter::Connections, 10),
            CountVerdict::Full
        );
        z.release(request, Counter::InFlight);
        held(z.acquire(newcomer, Counter::Connections, 10));
        // The keys already there still count.
        held(z.acquire(in_first_window(1), Counter::Connections, 10));
        assert_eq!(z.current(in_first_window(1), Counter::Connections), 2);
    }

    #[test]
    fn attach_keeps_counts_and_refuses_other_regions() {
        let words = leaked(1024);
        let z = CountZone::create(words, 7).expect("zone");
        let h = z.hash(b"alice");
        let slot = held(z.acquire(h, Counter::Connections, 1));
        let again = CountZone::attach(words).expect("attached");
        assert_eq!(again.hash(b"alice"), h);
        assert_eq!(
            again.acquire(h, Counter::Connections, 1),
            CountVerdict::Limited { current: 1 }
        );
        again.release(slot, Counter::Connections);
        assert_eq!(z.current(h, Counter::Connections), 0);
        assert!(CountZone::attach(words.get(..900).expect("part")).is_none());
        assert!(CountZone::attach(leaked(1024)).is_none());
        let rates = leaked(1024);
        super::super::RateZone::create(rates, 7).expect("rate zone");
        assert!(CountZone::attach(rates).is_none());
        assert!(CountZone::create(leaked(8 + 63), 1).is_none());
    }

    #[test]
    fn racing_threads_never_hold_more_than_the_maximum() {
        let z = zone(1024);
        let h = z.hash(b"alice");
        let max = 3;
        let holding = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                let (holding, most) = (&holding, &most);
                s.spawn(move || {
                    for _ in 0..20_000 {
                        if let CountVerdict::Held(slot) = z.acquire(h, Counter::InFlight, max) {
                            let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            holding.fetch_sub(1, Ordering::SeqCst);
                            z.release(slot, Counter::InFlight);
                        }
                    }
                });
            }
        });
        assert!(most.load(Ordering::SeqCst) <= max as usize);
        assert_eq!(z.current(h, Counter::InFlight), 0);
    }

    #[test]
    fn racing_threads_over_one_window_end_at_zero() {
        let z = zone(1024);
        // Twelve keys for eight words: they race to take and free them.
        let keys: Vec<u64> = (1..=12).map(in_first_window).collect();
        let counts = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let keys = &keys;
                    s.spawn(move || {
                        let mut held = 0u32;
                        for n in 0..20_000usize {
                            let Some(&h) = keys.get((n * 5 + t) % keys.len()) else {
                                continue;
                            };
                            let counter = if n % 2 == 0 {
                                Counter::Connections
                            } else {
                                Counter::InFlight
                            };
                            if let CountVerdict::Held(slot) = z.acquire(h, counter, 2) {
                                held += 1;
                                z.release(slot, counter);
                            }
                        }
                        held
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|t| t.join().unwrap_or(0))
                .collect::<Vec<_>>()
        });
        assert!(counts.iter().all(|&n| n > 0), "{counts:?}");
        for h in &keys {
            assert_eq!(z.current(*h, Counter::InFlight), 0);
            assert_eq!(z.current(*h, Counter::Connections), 0);
        }
        // Every word is free again: eight new keys fit.
        for tag in 100..108 {
            held(z.acquire(in_first_window(tag), Counter::Connections, 1));
        }
    }
}
