//! Request rates per key: the generic cell rate algorithm (GCRA) over one word per key.
//!
//! ```text
//! header: magic | slots | seed | horizon | (unused up to one cache line)
//! slots:  tag (24 bits) | theoretical arrival time (40 bits, microseconds modulo 2^40)
//! ```
//!
//! A key's bucket is its theoretical arrival time (TAT): the time at which it would again
//! be as if it had sent nothing. A request at `now` is allowed while the TAT is at most
//! `burst` intervals ahead of `now`, and moves it one interval on from `max(TAT, now)`; a
//! refused request leaves it where it is. A TAT in the past holds no state, so its word is
//! free for any key to take.
//!
//! Time has 40 bits (about 12.7 days of microseconds) and is compared as a signed
//! difference modulo 2^40. A TAT farther ahead than any request could have set it (the
//! zone's horizon: the most `(burst + 1) * interval` any of its users asked for) was set
//! before the clock wrapped, and counts as idle.
//!
//! Two first requests of one key may, in a rare race with a third key's bucket going idle
//! in the same window, start two buckets: one more request than the burst gets through,
//! and the key's later requests all count on the first of the two.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use super::table::Table;

const MAGIC: u64 = u64::from_be_bytes(*b"cqlrate1");
/// The header word after magic, slots and seed: the zone's horizon.
const H_HORIZON: usize = 3;

const TIME_BITS: u32 = 40;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
/// Differences of this much or more are negative (a TAT in the past).
const HALF: u64 = 1 << (TIME_BITS - 1);
/// The farthest ahead of now a burst may put a TAT (about 3.2 days): larger bursts are
/// cut to it, see [`Rate::max_burst`].
pub const MAX_AHEAD_US: u64 = 1 << (TIME_BITS - 2);

/// A rate as `cql_limit_req_zone` gives it: `Nr/s` or `Nr/m`, `N` at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    per_minute: bool,
    /// Worked out once: a request needs them, not their divisions.
    interval_us: u64,
    max_burst: u32,
}

impl Rate {
    /// Parses `10r/s`, `600r/m`, or a bare number of requests per second, as NGINX's
    /// `limit_req_zone` does.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let invalid = || format!("invalid rate \"{text}\"");
        let (digits, per_minute) = if let Some(d) = text.strip_suffix("r/s") {
            (d, false)
        } else if let Some(d) = text.strip_suffix("r/m") {
            (d, true)
        } else {
            (text, false)
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        match digits.parse::<u32>() {
            Ok(count) if count > 0 => Ok(Rate::new(count, per_minute)),
            _ => Err(invalid()),
        }
    }

    fn new(count: u32, per_minute: bool) -> Rate {
        let period: u64 = if per_minute { 60_000_000 } else { 1_000_000 };
        let interval_us = period.div_ceil(u64::from(count.max(1))).max(1);
        let intervals = MAX_AHEAD_US / interval_us;
        Rate {
            count,
            per_minute,
            interval_us,
            max_burst: u32::try_from(intervals.saturating_sub(1)).unwrap_or(u32::MAX),
        }
    }

    /// The time between two requests at this rate, in microseconds, rounded up (never
    /// looser than the rate) and at least 1.
    pub fn interval_us(&self) -> u64 {
        self.interval_us
    }

    /// The largest burst this rate holds: `(burst + 1)` intervals fit [`MAX_AHEAD_US`].
    /// A larger burst is used as this one.
    pub fn max_burst(&self) -> u32 {
        self.max_burst
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = if self.per_minute { 'm' } else { 's' };
        write!(f, "{}r/{unit}", self.count)
    }
}

/// What a rate zone says to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateVerdict {
    /// The request is within the rate; the bucket counted it.
    Allowed,
    /// Over the rate: a request would be allowed again in `retry_after_us`.
    Limited { retry_after_us: u64 },
    /// Every word of the key's window holds another key's live bucket: refuse.
    Full,
}

/// A region of rate buckets.
#[derive(Clone, Copy)]
pub struct RateZone {
    table: Table,
}

impl fmt::Debug for RateZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateZone")
            .field("slots", &self.table.slots())
            .finish()
    }
}

impl RateZone {
    /// The words a region of `bytes` bytes holds.
    pub fn words_for_bytes(bytes: usize) -> usize {
        Table::words_for_bytes(bytes)
    }

    /// Lays a fresh zone out over `words`: every bucket empty, keys hashed with `seed`.
    /// `None` when the region holds fewer than 64 buckets.
    pub fn create(words: &'static [AtomicU64], seed: u64) -> Option<RateZone> {
        let table = Table::create(words, MAGIC, seed)?;
        Some(RateZone { table })
    }

    /// The zone an earlier configuration laid out over `words`, every bucket kept; `None`
    /// when the region holds no rate zone of this size.
    pub fn attach(words: &'static [AtomicU64]) -> Option<RateZone> {
        let table = Table::attach(words, MAGIC)?;
        Some(RateZone { table })
    }

    /// How many buckets the zone has.
    pub fn slots(&self) -> usize {
        self.table.slots()
    }

    /// The hash of a key in this zone (its seed's): computed once per key, kept by the caller.
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.table.hash(key)
    }

    /// Counts a request of the key of `hash` at `now_us` (a monotonic clock in microseconds,
    /// the same in every process) against `rate` with `burst` requests of tolerance.
    pub fn acquire(&self, hash: u64, rate: &Rate, burst: u32, now_us: u64) -> RateVerdict {
        let interval = rate.interval_us;
        let tolerance = u64::from(burst.min(rate.max_burst)) * interval;
        let horizon = self.horizon(tolerance + interval);
        let tag = (hash >> TIME_BITS).max(1);
        let now = now_us & TIME_MASK;
        let Some((_, window)) = self.table.window(hash) else {
            return RateVerdict::Full;
        };
        // Each failed exchange is another request's success on the same word: this ends.
        loop {
            let mut mine = None;
            let mut free = None;
            for word in window {
                let w = word.load(Ordering::Relaxed);
                if w >> TIME_BITS == tag {
                    mine = Some((word, w, ahead(w, now, horizon)));
                    break;
                }
                if free.is_none() && (w >> TIME_BITS == 0 || ahead(w, now, horizon) == 0) {
                    free = Some((word, w, 0));
                }
            }
            let Some((word, w, ahead)) = mine.or(free) else {
                return RateVerdict::Full;
            };
            if ahead > tolerance {
                return RateVerdict::Limited {
                    retry_after_us: ahead - tolerance,
                };
            }
            let tat = (now + ahead + interval) & TIME_MASK;
            let next = (tag << TIME_BITS) | tat;
            if word
                .compare_exchange_weak(w, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return RateVerdict::Allowed;
            }
        }
    }

    /// The farthest ahead a TAT of this zone may be: at least `needed`, raised for every
    /// user of the zone that needs more (a server with a larger burst), so that no user
    /// takes another's live bucket for one set before the clock wrapped.
    fn horizon(&self, needed: u64) -> u64 {
        let Some(word) = self.table.header(H_HORIZON) else {
            return needed;
        };
        let known = word.load(Ordering::Relaxed);
        if needed > known {
            word.fetch_max(needed, Ordering::Relaxed).max(needed)
        } else {
            known.min(HALF - 1)
        }
    }
}

/// How far ahead of `now` the TAT of word `w` is, 0 when it is in the past or farther
/// ahead than `horizon` (set before the clock wrapped).
fn ahead(w: u64, now: u64, horizon: u64) -> u64 {
    let d = (w & TIME_MASK).wrapping_sub(now) & TIME_MASK;
    if d >= HALF || d > horizon {
        0
    } else {
        d
    }
}

#[cfg(test)]
mod tests {
    use super::super::leaked;
    use super::*;

    const MS: u64 = 1_000;
    const SEC: u64 = 1_000_000;
    /// A start far from zero, as a machine's monotonic clock is.
    const T0: u64 = 7 * 86_400 * SEC;

    fn zone(words: usize) -> RateZone {
        RateZone::create(leaked(words), 0x5eed).expect("zone")
    }

    fn rate(text: &str) -> Rate {
        Rate::parse(text).expect("rate")
    }

    /// A refusal: a request would be allowed again in `us`.
    fn retry_after(us: u64) -> RateVerdict {
        RateVerdict::Limited { retry_after_us: us }
    }

    /// Whether `verdict` refuses, however long until a request is allowed again.
    fn limited(verdict: RateVerdict) -> bool {
        matches!(verdict, RateVerdict::Limited { .. })
    }

    /// Sends a whole burst of the key of `hash` at `now`, `burst + 1` requests: all allowed.
    fn spend_burst(z: &RateZone, hash: u64, r: &Rate, burst: u32, now: u64) {
        for i in 0..=burst {
            assert_eq!(
                z.acquire(hash, r, burst, now),
                RateVerdict::Allowed,
                "request {i}"
            );
        }
    }

    /// A hash whose key lands in the first window with `tag`.
    fn in_first_window(tag: u64) -> u64 {
        tag << TIME_BITS
    }

    /// The index of the first word of the window of `hash`.
    fn first_slot(z: &RateZone, hash: u64) -> Option<usize> {
        z.table.window(hash).map(|(base, _)| base)
    }

    #[test]
    fn rates_parse_as_nginx_writes_them() {
        assert_eq!(rate("10r/s").interval_us(), 100 * MS);
        assert_eq!(rate("600r/m").interval_us(), 100 * MS);
        assert_eq!(rate("1r/m").interval_us(), 60 * SEC);
        assert_eq!(
            rate("3r/s").interval_us(),
            333_334,
            "rounded up: never looser"
        );
        assert_eq!(rate("2000000r/s").interval_us(), 1);
        assert_eq!(rate("10r/s").to_string(), "10r/s");
        assert_eq!(rate("600r/m").to_string(), "600r/m");
        assert_eq!(
            rate("10").to_string(),
            "10r/s",
            "a bare number is per second"
        );
        for bad in [
            "",
            "r/s",
            "0r/s",
            "0",
            "-1r/s",
            "+1r/s",
            "1.5r/s",
            "10r/h",
            "10 r/s",
            "ten",
            "99999999999r/s",
        ] {
            assert_eq!(
                Rate::parse(bad),
                Err(format!("invalid rate \"{bad}\"")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_burst_is_cut_to_what_the_clock_holds() {
        let slow = rate("1r/m");
        assert!(u64::from(slow.max_burst() + 1) * slow.interval_us() <= MAX_AHEAD_US);
        assert!(u64::from(slow.max_burst() + 2) * slow.interval_us() > MAX_AHEAD_US);
        let z = zone(1024);
        let h = z.hash(b"alice");
        let allowed = (0..10_000)
            .filter(|_| z.acquire(h, &slow, u32::MAX, T0) == RateVerdict::Allowed)
            .count();
        assert_eq!(allowed, slow.max_burst() as usize + 1);
    }

    #[test]
    fn without_burst_one_request_per_interval() {
        let z = zone(1024);
        let r = rate("10r/s");
        let h = z.hash(b"alice");
        assert_eq!(z.acquire(h, &r, 0, T0), RateVerdict::Allowed);
        assert_eq!(z.acquire(h, &r, 0, T0 + 30 * MS), retry_after(70 * MS));
        assert_eq!(z.acquire(h, &r, 0, T0 + 100 * MS - 1), retry_after(1));
        assert_eq!(z.acquire(h, &r, 0, T0 + 100 * MS), RateVerdict::Allowed);
        // A request every millisecond for a second: ten get through.
        let h = z.hash(b"bob");
        let allowed = (0..1000)
            .filter(|i| z.acquire(h, &r, 0, T0 + i * MS) == RateVerdict::Allowed)
            .count();
        assert_eq!(allowed, 10);
    }

    #[test]
    fn a_burst_goes_through_at_once_then_one_per_interval() {
        let z = zone(1024);
        let r = rate("10r/s");
        let h = z.hash(b"alice");
        spend_burst(&z, h, &r, 5, T0);
        assert_eq!(z.acquire(h, &r, 5, T0), retry_after(100 * MS));
        // Refusals do not push the bucket further.
        for _ in 0..100 {
            assert!(limited(z.acquire(h, &r, 5, T0 + 50 * MS)));
        }
        assert_eq!(z.acquire(h, &r, 5, T0 + 100 * MS), RateVerdict::Allowed);
        assert_eq!(z.acquire(h, &r, 5, T0 + 100 * MS), retry_after(100 * MS));
        // After a quiet second the whole burst is back.
        let later = T0 + 2 * SEC;
        let allowed = (0..20)
            .filter(|_| z.acquire(h, &r, 5, later) == RateVerdict::Allowed)
            .count();
        assert_eq!(allowed, 6);
    }

    #[test]
    fn keys_are_independent() {
        let z = zone(1024);
        let r = rate("1r/s");
        let (a, b) = (z.hash(b"alice"), z.hash(b"bob"));
        assert_ne!(a, b);
        assert_eq!(z.acquire(a, &r, 0, T0), RateVerdict::Allowed);
        assert!(limited(z.acquire(a, &r, 0, T0)));
        assert_eq!(z.acquire(b, &r, 0, T0), RateVerdict::Allowed);
        // Two keys in one window with other tags, too.
        let (c, d) = (in_first_window(1), in_first_window(2));
        assert_eq!(z.acquire(c, &r, 0, T0), RateVerdict::Allowed);
        assert_eq!(z.acquire(d, &r, 0, T0), RateVerdict::Allowed);
        assert!(limited(z.acquire(c, &r, 0, T0)));
        assert!(limited(z.acquire(d, &r, 0, T0)));
    }

    #[test]
    fn a_small_zone_serves_many_keys_over_time() {
        let z = zone(8 + 64);
        assert_eq!(z.slots(), 64);
        let r = rate("10r/s");
        for i in 0..10_000u64 {
            let h = z.hash(format!("client-{i}").as_bytes());
            // Each key's bucket is idle again one interval after its request.
            let now = T0 + i * 100 * MS;
            assert_eq!(z.acquire(h, &r, 0, now), RateVerdict::Allowed, "key {i}");
        }
    }

    #[test]
    fn a_window_of_busy_keys_is_full_until_one_idles() {
        let z = zone(1024);
        let r = rate("10r/s");
        for tag in 1..=8 {
            assert_eq!(
                z.acquire(in_first_window(tag), &r, 0, T0),
                RateVerdict::Allowed
            );
        }
        assert_eq!(z.acquire(in_first_window(9), &r, 0, T0), RateVerdict::Full);
        assert_eq!(
            z.acquire(in_first_window(9), &r, 0, T0 + 50 * MS),
            RateVerdict::Full
        );
        // The keys already there are still counted.
        assert!(limited(z.acquire(in_first_window(3), &r, 0, T0 + 50 * MS)));
        // Once their buckets idle, the newcomer takes one.
        assert_eq!(
            z.acquire(in_first_window(9), &r, 0, T0 + 100 * MS),
            RateVerdict::Allowed
        );
        // A key in another window never noticed.
        let elsewhere = (0..100u32)
            .map(|i| z.hash(&i.to_be_bytes()))
            .find(|h| first_slot(&z, *h) != first_slot(&z, in_first_window(1)))
            .expect("a key in another window");
        assert_eq!(z.acquire(elsewhere, &r, 0, T0), RateVerdict::Allowed);
    }

    #[test]
    fn the_clock_wraps_without_loosening_or_stalling() {
        let z = zone(1024);
        let r = rate("10r/s");
        let h = z.hash(b"alice");
        let wrap = 3 << TIME_BITS;
        // The bucket's TAT is past the wrap, the request before it.
        let before = wrap - 30 * MS;
        assert_eq!(z.acquire(h, &r, 0, before), RateVerdict::Allowed);
        assert_eq!(z.acquire(h, &r, 0, before + 10 * MS), retry_after(90 * MS));
        assert_eq!(z.acquire(h, &r, 0, wrap + 10 * MS), retry_after(60 * MS));
        assert_eq!(z.acquire(h, &r, 0, before + 100 * MS), RateVerdict::Allowed);
        // A bucket idle for almost the clock's whole span looks far ahead: it is stale.
        let h = z.hash(b"bob");
        assert_eq!(z.acquire(h, &r, 0, T0), RateVerdict::Allowed);
        let much_later = T0 + (1 << TIME_BITS) - 300 * MS;
        assert_eq!(z.acquire(h, &r, 0, much_later), RateVerdict::Allowed);
        assert!(limited(z.acquire(h, &r, 0, much_later)));
    }

    #[test]
    fn a_tat_beyond_any_burst_is_stale() {
        let z = zone(1024);
        let r = rate("10r/s");
        let h = in_first_window(5);
        let word = z
            .table
            .window(h)
            .and_then(|(_, window)| window.first())
            .expect("word");
        for ahead in [HALF - 1, MAX_AHEAD_US, 2 * 100 * MS] {
            word.store(
                (5 << TIME_BITS) | ((T0 + ahead) & TIME_MASK),
                Ordering::Relaxed,
            );
            assert_eq!(z.acquire(h, &r, 0, T0), RateVerdict::Allowed, "{ahead}");
        }
        // One interval ahead is a live bucket.
        word.store(
            (5 << TIME_BITS) | ((T0 + 100 * MS) & TIME_MASK),
            Ordering::Relaxed,
        );
        assert!(limited(z.acquire(h, &r, 0, T0)));
    }

    #[test]
    fn users_with_a_smaller_burst_respect_a_larger_ones_bucket() {
        // Two servers share the zone, one with burst=10, one without.
        let z = zone(1024);
        let r = rate("10r/s");
        let h = z.hash(b"alice");
        spend_burst(&z, h, &r, 10, T0);
        assert_eq!(z.acquire(h, &r, 0, T0), retry_after(1100 * MS));
        assert!(limited(z.acquire(h, &r, 10, T0)));
    }

    #[test]
    fn attach_keeps_buckets_and_refuses_other_regions() {
        let words = leaked(1024);
        let z = RateZone::create(words, 42).expect("zone");
        let r = rate("1r/s");
        let h = z.hash(b"alice");
        assert_eq!(z.acquire(h, &r, 0, T0), RateVerdict::Allowed);
        let again = RateZone::attach(words).expect("attached");
        assert_eq!(again.hash(b"alice"), h, "the seed is the header's");
        assert!(limited(again.acquire(h, &r, 0, T0)));
        // Another size, no zone at all, another kind of zone, too small.
        assert!(RateZone::attach(words.get(..512).expect("half")).is_none());
        assert!(RateZone::attach(leaked(1024)).is_none());
        let counts = leaked(1024);
        super::super::CountZone::create(counts, 42).expect("count zone");
        assert!(RateZone::attach(counts).is_none());
        assert!(RateZone::create(leaked(8 + 63), 1).is_none());
        assert!(RateZone::attach(leaked(8 + 63)).is_none());
        // A fresh zone forgets.
        let z = RateZone::create(words, 42).expect("zone");
        assert_eq!(z.acquire(h, &r, 0, T0), RateVerdict::Allowed);
    }

    #[test]
    fn seeds_change_hashes() {
        let a = RateZone::create(leaked(1024), 1).expect("zone");
        let b = RateZone::create(leaked(1024), 2).expect("zone");
        assert_eq!(a.hash(b"alice"), a.hash(b"alice"));
        assert_ne!(a.hash(b"alice"), b.hash(b"alice"));
        assert_ne!(a.hash(b"alice"), a.hash(b"alicf"));
    }

    #[test]
    fn racing_threads_never_pass_more_than_the_burst() {
        let z = zone(1024);
        let r = rate("10r/s");
        let h = z.hash(b"alice");
        let allowed: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(move || {
                        (0..10_000)
                            .filter(|_| z.acquire(h, &r, 5, T0) == RateVerdict::Allowed)
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|t| t.join().unwrap_or(0)).sum()
        });
        assert_eq!(allowed, 6);
    }
}
