//! The prepared registry: which statement a prepared id stands for.
//!
//! RESULT Prepared carries no statement text, so the session remembers each PREPARE by its
//! stream id and, when the server answers with an id, records the classified statement here.
//! Entries come only from the server's answers, never from what a client claims. Prepared ids
//! are the same on every connection to a cluster, so one registry serves all connections of a
//! worker; it is bounded, and an EXECUTE of an id it no longer holds is answered Unprepared,
//! which makes the driver prepare again.

use std::borrow::Cow;
use std::mem::size_of;
use std::num::NonZeroUsize;
use std::rc::Rc;

use lru::LruCache;

use crate::classify::{Need, Resource, Statement};

/// A map from prepared id to the statement it was prepared from, bounded by its number of
/// entries and by the bytes they hold (see [`PreparedRegistry::bytes`]): a client that
/// prepares many large statements pushes out the least recently used ones rather than growing
/// the worker.
pub struct PreparedRegistry {
    entries: LruCache<Vec<u8>, Slot>,
    /// The bytes the entries hold, the sum of their [`Slot::bytes`].
    bytes: usize,
    /// The most [`bytes`](Self::bytes) may reach.
    max_bytes: usize,
    stats: crate::metrics::CacheStats,
}

/// A registry entry with the bytes it was counted for when inserted.
struct Slot {
    prepared: Rc<Prepared>,
    bytes: usize,
}

/// A prepared statement as the proxy knows it.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The text the client prepared, for the audit log; empty (and then costing nothing) when
    /// the server has no audit log.
    pub text: String,
    /// The statement classified when it was prepared, with the keyspace of that time.
    pub statement: Statement<'static>,
    /// The length of the text the client prepared, for `max_statement_bytes`: an id one
    /// identity prepared may be executed by another, whose roles bound it more tightly.
    pub text_bytes: usize,
    /// The result columns the PREPARE's answer announced, kept for a SELECT on a system table
    /// the proxy rewrites (its EXECUTE results may come without metadata).
    pub columns: Option<crate::topology::Columns>,
}

/// What one entry costs besides its id, text and statement heap: the shared `Prepared` with
/// its reference counts, the registry's key and value, the LRU's list links and its hash
/// table slot.
const ENTRY_OVERHEAD: usize = size_of::<Prepared>()
    + 2 * size_of::<usize>()
    + size_of::<Vec<u8>>()
    + size_of::<Slot>()
    + 4 * size_of::<usize>();

impl PreparedRegistry {
    /// A registry of at most `capacity` entries (at least one) holding at most `max_bytes`
    /// (0: nothing is kept).
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        PreparedRegistry {
            entries: LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)),
            bytes: 0,
            max_bytes,
            stats: crate::metrics::CacheStats::default(),
        }
    }

    /// Records that the server prepared `prepared` as `id`, replacing what `id` stood for,
    /// and forgets the least recently used entries until both bounds hold. An entry larger
    /// than the byte bound on its own is not kept: an EXECUTE of it is answered Unprepared.
    pub fn insert(&mut self, id: &[u8], prepared: Rc<Prepared>) {
        if let Some(old) = self.entries.pop(id) {
            self.bytes = self.bytes.saturating_sub(old.bytes);
        }
        let bytes = entry_bytes(id, &prepared);
        if bytes > self.max_bytes {
            return;
        }
        while self.bytes.saturating_add(bytes) > self.max_bytes {
            let Some((_, evicted)) = self.entries.pop_lru() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(evicted.bytes);
            self.stats.evictions += 1;
        }
        // `id` is not in the map any more, so what `push` returns is the entry evicted for
        // the count bound.
        if let Some((_, evicted)) = self.entries.push(id.to_vec(), Slot { prepared, bytes }) {
            self.bytes = self.bytes.saturating_sub(evicted.bytes);
            self.stats.evictions += 1;
        }
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// The statement `id` stands for, which becomes the most recently used.
    pub fn get(&mut self, id: &[u8]) -> Option<Rc<Prepared>> {
        let found = self.entries.get(id).map(|slot| Rc::clone(&slot.prepared));
        match found {
            Some(_) => self.stats.hits += 1,
            None => self.stats.misses += 1,
        }
        found
    }

    /// Lookups by EXECUTE, and entries evicted to make room.
    pub fn stats(&self) -> crate::metrics::CacheStats {
        self.stats
    }

    /// How many ids the registry holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the registry holds no id.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes the entries hold, by estimate: ids, statement texts, the heap of the
    /// classified statements, and a fixed overhead per entry.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// What the entry `id` → `prepared` costs, by estimate (see [`PreparedRegistry::bytes`]).
fn entry_bytes(id: &[u8], prepared: &Prepared) -> usize {
    ENTRY_OVERHEAD
        .saturating_add(id.len())
        .saturating_add(prepared.text.capacity())
        .saturating_add(statement_heap_bytes(&prepared.statement))
        .saturating_add(prepared.columns.as_ref().map_or(0, |c| c.heap_bytes()))
}

/// The heap a classified statement owns: its needs with their names, keyspace, table and
/// role names, the reason it was not parsed, and its BATCH children with theirs. Walked with
/// a stack rather than recursion, whatever the nesting.
fn statement_heap_bytes(statement: &Statement<'_>) -> usize {
    let mut total = 0usize;
    let mut pending = vec![statement];
    while let Some(s) = pending.pop() {
        let names = [&s.keyspace, &s.table, &s.role]
            .into_iter()
            .flatten()
            .map(cow_heap_bytes);
        let needs = s.needs.iter().map(|n| resource_heap_bytes(&n.resource));
        total = names
            .chain(needs)
            .fold(total, usize::saturating_add)
            .saturating_add(s.needs.capacity().saturating_mul(size_of::<Need<'_>>()))
            .saturating_add(
                s.children
                    .capacity()
                    .saturating_mul(size_of::<Statement<'_>>()),
            )
            .saturating_add(s.unparsed.as_ref().map_or(0, String::capacity));
        pending.extend(&s.children);
    }
    total
}

/// The heap of the names in a resource.
fn resource_heap_bytes(resource: &Resource<'_>) -> usize {
    match resource {
        Resource::AllKeyspaces
        | Resource::AllFunctions
        | Resource::AllRoles
        | Resource::AllMbeans => 0,
        Resource::Keyspace(name)
        | Resource::KeyspaceFunctions(name)
        | Resource::Role(name)
        | Resource::Mbean(name) => cow_heap_bytes(name),
        Resource::Table { keyspace, table } => {
            cow_heap_bytes(keyspace).saturating_add(cow_heap_bytes(table))
        }
        Resource::Function {
            keyspace,
            name,
            args,
        } => cow_heap_bytes(keyspace)
            .saturating_add(cow_heap_bytes(name))
            .saturating_add(args.as_ref().map_or(0, cow_heap_bytes)),
    }
}

/// The heap an owned name holds; a borrowed one holds none of its own.
// Whether the `Cow` owns its text is the question, so it cannot be a `&str`.
#[allow(clippy::ptr_arg)]
fn cow_heap_bytes(name: &Cow<'_, str>) -> usize {
    match name {
        Cow::Owned(s) => s.capacity(),
        Cow::Borrowed(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::classify;

    fn prepared(text: &str) -> Rc<Prepared> {
        Rc::new(Prepared {
            text: text.to_string(),
            statement: classify(text, None).into_owned(),
            text_bytes: text.len(),
            columns: None,
        })
    }

    #[test]
    fn holds_what_was_inserted_and_forgets_the_least_recent() {
        let mut r = PreparedRegistry::new(2, usize::MAX);
        r.insert(b"a", prepared("SELECT * FROM ks.a"));
        r.insert(b"b", prepared("SELECT * FROM ks.b"));
        assert_eq!(
            r.get(b"a").map(|p| p.text.clone()).as_deref(),
            Some("SELECT * FROM ks.a")
        );
        r.insert(b"c", prepared("SELECT * FROM ks.c"));
        assert!(r.get(b"b").is_none(), "b was the least recently used");
        assert!(r.get(b"a").is_some());
        assert!(r.get(b"c").is_some());
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn capacity_zero_still_holds_one() {
        let mut r = PreparedRegistry::new(0, usize::MAX);
        r.insert(b"a", prepared("SELECT * FROM ks.a"));
        assert!(r.get(b"a").is_some());
    }

    /// A statement with `size` bytes of text beyond its start. Only the start is classified,
    /// which keeps the tests fast: the text is what makes the entry large.
    fn large(table: &str, size: usize) -> Rc<Prepared> {
        let start = format!("SELECT * FROM ks.{table}");
        let mut text = String::with_capacity(start.len() + size);
        text.push_str(&start);
        text.push_str(&" ".repeat(size));
        Rc::new(Prepared {
            statement: classify(&start, None).into_owned(),
            text_bytes: text.len(),
            text,
            columns: None,
        })
    }

    /// What the registry holds, from the least recently used on, without touching the order.
    fn ids(r: &PreparedRegistry) -> Vec<Vec<u8>> {
        r.entries.iter().rev().map(|(id, _)| id.clone()).collect()
    }

    #[test]
    fn many_large_entries_stay_under_the_byte_bound() {
        const MB: usize = 1024 * 1024;
        let mut r = PreparedRegistry::new(10_000, 8 * MB);
        for i in 0..400u32 {
            r.insert(&i.to_be_bytes(), large(&format!("t{i}"), MB));
            assert!(r.bytes() <= 8 * MB, "{} bytes after {i}", r.bytes());
        }
        assert_eq!(r.len(), 7, "seven statements of 1 MB fit in 8 MB");
        // The most recent ones are kept.
        assert!(r.get(&399u32.to_be_bytes()).is_some());
        assert!(r.get(&393u32.to_be_bytes()).is_some());
        assert!(r.get(&392u32.to_be_bytes()).is_none());
    }

    #[test]
    fn the_byte_bound_evicts_the_least_recently_used() {
        let one = entry_bytes(b"a", &large("a", 1000));
        let mut r = PreparedRegistry::new(100, 3 * one + one / 2);
        r.insert(b"a", large("a", 1000));
        r.insert(b"b", large("b", 1000));
        r.insert(b"c", large("c", 1000));
        assert!(r.get(b"a").is_some(), "a becomes the most recently used");
        r.insert(b"d", large("d", 1000));
        assert_eq!(ids(&r), [b"c".to_vec(), b"a".to_vec(), b"d".to_vec()]);
        assert_eq!(r.bytes(), 3 * one);
        // A large entry pushes out as many as it needs, least recent first.
        r.insert(b"e", large("e", 2500));
        assert_eq!(ids(&r), [b"d".to_vec(), b"e".to_vec()]);
    }

    #[test]
    fn an_entry_larger_than_the_bound_is_not_kept() {
        let mut r = PreparedRegistry::new(100, 64 * 1024);
        r.insert(b"a", large("a", 100));
        let before = r.bytes();
        r.insert(b"big", large("big", 64 * 1024));
        assert!(r.get(b"big").is_none());
        assert!(r.get(b"a").is_some(), "nothing was evicted for it");
        assert_eq!(r.bytes(), before);
        let mut none = PreparedRegistry::new(100, 0);
        none.insert(b"a", prepared("SELECT * FROM ks.a"));
        assert!(none.is_empty());
        assert_eq!(none.bytes(), 0);
    }

    #[test]
    fn replacing_an_id_adjusts_the_byte_count() {
        let mut r = PreparedRegistry::new(100, usize::MAX);
        r.insert(b"a", large("a", 5000));
        r.insert(b"b", prepared("SELECT * FROM ks.b"));
        let b = r.bytes() - entry_bytes(b"a", &large("a", 5000));
        r.insert(b"a", prepared("SELECT * FROM ks.a"));
        assert_eq!(r.len(), 2);
        assert_eq!(
            r.bytes(),
            b + entry_bytes(b"a", &prepared("SELECT * FROM ks.a"))
        );
        assert_eq!(
            r.get(b"a").map(|p| p.text.clone()).as_deref(),
            Some("SELECT * FROM ks.a")
        );
        // The count bound keeps the byte count right too.
        let mut r = PreparedRegistry::new(1, usize::MAX);
        r.insert(b"a", large("a", 5000));
        r.insert(b"b", prepared("SELECT * FROM ks.b"));
        assert_eq!(
            r.bytes(),
            entry_bytes(b"b", &prepared("SELECT * FROM ks.b"))
        );
    }

    #[test]
    fn an_empty_text_costs_nothing() {
        let text = "SELECT * FROM ks.a WHERE k = ?";
        let with_text = prepared(text);
        let without = Rc::new(Prepared {
            text: String::new(),
            statement: classify(text, None).into_owned(),
            text_bytes: text.len(),
            columns: None,
        });
        assert_eq!(
            entry_bytes(b"a", &with_text) - entry_bytes(b"a", &without),
            text.len()
        );
        assert_eq!(
            entry_bytes(b"a", &without),
            ENTRY_OVERHEAD + 1 + statement_heap_bytes(&without.statement)
        );
    }

    #[test]
    fn the_statement_estimate_counts_names_and_children() {
        let single = classify("INSERT INTO ks.t (k) VALUES (1)", None).into_owned();
        let batch = classify(
            "BEGIN BATCH INSERT INTO ks.t (k) VALUES (1); INSERT INTO ks.u (k) VALUES (1); APPLY BATCH",
            None,
        )
        .into_owned();
        assert!(statement_heap_bytes(&single) > "ks".len() + "t".len());
        assert!(
            statement_heap_bytes(&batch) > 2 * statement_heap_bytes(&single),
            "{batch:?}"
        );
        let long = format!("SELECT * FROM ks.{}", "t".repeat(10_000));
        assert!(statement_heap_bytes(&classify(&long, None).into_owned()) > 20_000);
    }
}
