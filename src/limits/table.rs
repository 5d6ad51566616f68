//! The layout every limit zone has: a header of one cache line, then one word per key in
//! windows of eight words.
//!
//! ```text
//! header: magic | slots | seed | (the zone's own words) | (unused up to one cache line)
//! slots:  one word per key, in windows of one cache line
//! ```
//!
//! A zone's magic names its kind (rates, counts) and the layout of its words; the slots
//! word is checked when a zone is attached, so a region of another size is laid out anew.

use core::sync::atomic::{AtomicU64, Ordering};
use std::hash::Hasher;

/// Words of a zone's header (one cache line): the slots start on a line of their own.
const HEADER_WORDS: usize = 8;
/// Slots one key may be found in: one cache line of words.
const WINDOW: usize = 8;
/// The fewest slots a zone has.
const MIN_SLOTS: usize = 64;
/// The most slots a zone uses (16 GiB of words); a larger region's rest stays unused.
const MAX_SLOTS: usize = 1 << 31;

const H_MAGIC: usize = 0;
const H_SLOTS: usize = 1;
const H_SEED: usize = 2;

/// A zone's region: its header (magic, slots, seed) and its slots.
#[derive(Clone, Copy)]
pub(super) struct Table {
    words: &'static [AtomicU64],
    slots: usize,
    seed: u64,
}

impl Table {
    /// The words a region of `bytes` bytes holds.
    pub(super) fn words_for_bytes(bytes: usize) -> usize {
        bytes / 8
    }

    /// Lays a fresh table out over `words`: every word zero, then the header with `magic`,
    /// the slots and `seed`. `None` when the region holds fewer than 64 slots.
    pub(super) fn create(words: &'static [AtomicU64], magic: u64, seed: u64) -> Option<Table> {
        let slots = slots_in(words.len())?;
        for word in words.get(..HEADER_WORDS + slots)? {
            word.store(0, Ordering::Relaxed);
        }
        words.get(H_SLOTS)?.store(slots as u64, Ordering::Relaxed);
        words.get(H_SEED)?.store(seed, Ordering::Relaxed);
        // The magic goes last: a half-written header is not mistaken for a whole one.
        words.get(H_MAGIC)?.store(magic, Ordering::Release);
        Some(Table { words, slots, seed })
    }

    /// The table an earlier configuration laid out over `words` with `magic`, every word
    /// kept; `None` when the region holds no such table of this size.
    pub(super) fn attach(words: &'static [AtomicU64], magic: u64) -> Option<Table> {
        let slots = slots_in(words.len())?;
        let found = words.get(H_MAGIC)?.load(Ordering::Acquire);
        if found != magic || words.get(H_SLOTS)?.load(Ordering::Relaxed) != slots as u64 {
            return None;
        }
        let seed = words.get(H_SEED)?.load(Ordering::Relaxed);
        Some(Table { words, slots, seed })
    }

    /// How many slots the table has.
    pub(super) fn slots(&self) -> usize {
        self.slots
    }

    /// The hash of a key under the table's seed: the same in every process of one binary.
    pub(super) fn hash(&self, key: &[u8]) -> u64 {
        // SipHash with fixed keys: the seed, fed first, keys it.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write_u64(self.seed);
        h.write(key);
        h.finish()
    }

    /// The window of `hash`: the index of its first slot, and its [`WINDOW`] words.
    pub(super) fn window(&self, hash: u64) -> Option<(usize, &'static [AtomicU64])> {
        let windows = (self.slots / WINDOW) as u64;
        // The low 32 bits spread over the windows; the tags come from the high bits.
        let window = ((hash & 0xffff_ffff) * windows) >> 32;
        let base = HEADER_WORDS + window as usize * WINDOW;
        Some((base, self.words.get(base..base + WINDOW)?))
    }

    /// The word at `index` when it is a slot's, not the header's.
    pub(super) fn slot(&self, index: usize) -> Option<&'static AtomicU64> {
        if index < HEADER_WORDS {
            return None;
        }
        self.words.get(index)
    }

    /// Word `i` of the header: a zone keeps its own from word 3 on.
    pub(super) fn header(&self, i: usize) -> Option<&'static AtomicU64> {
        self.words.get(..HEADER_WORDS)?.get(i)
    }

    /// The whole region.
    #[cfg(test)]
    pub(super) fn words(&self) -> &'static [AtomicU64] {
        self.words
    }
}

/// The slots a region of `words` words holds after the header, whole windows only; `None`
/// when fewer than [`MIN_SLOTS`].
fn slots_in(words: usize) -> Option<usize> {
    let slots = (words.checked_sub(HEADER_WORDS)? / WINDOW * WINDOW).min(MAX_SLOTS);
    (slots >= MIN_SLOTS).then_some(slots)
}

#[cfg(test)]
mod tests {
    use super::super::leaked;
    use super::*;

    #[test]
    fn the_header_holds_magic_slots_and_seed_in_its_first_words() {
        let words = leaked(8 + 128 + 5);
        let table = Table::create(words, 0xc0de, 42).expect("table");
        assert_eq!(table.slots(), 128);
        let header: Vec<u64> = words
            .iter()
            .take(HEADER_WORDS)
            .map(|w| w.load(Ordering::Relaxed))
            .collect();
        assert_eq!(header, [0xc0de, 128, 42, 0, 0, 0, 0, 0]);
        // A header written word by word is attached with its seed.
        let region = leaked(8 + 64);
        for (word, value) in region.iter().zip([0xc0de, 64, 42]) {
            word.store(value, Ordering::Relaxed);
        }
        let found = Table::attach(region, 0xc0de).expect("attached");
        assert_eq!(found.hash(b"alice"), table.hash(b"alice"));
        assert!(Table::attach(region, 0xc0df).is_none());
        assert_eq!(found.window(0).map(|(base, _)| base), Some(HEADER_WORDS));
        assert!(found.slot(HEADER_WORDS - 1).is_none());
        assert!(found.header(HEADER_WORDS).is_none());
    }
}
