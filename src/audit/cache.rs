//! The rendered subjects of prepared statements, kept per session by prepared id: an EXECUTE's
//! keyspace, table, masked text and id are rendered at its first EXECUTE on the connection
//! and shared by the records of the next ones.

use std::mem::size_of;
use std::num::NonZeroUsize;

use lru::LruCache;

use super::{Renderer, Subject};

/// How many prepared ids a session keeps rendered.
pub const ENTRIES: usize = 32;

/// How many bytes (ids, texts, rendered fields) a session keeps rendered at most.
pub const MAX_BYTES: usize = 16 * 1024;

/// What one entry costs besides its id, text, table and rendered bytes: the entry, the
/// subject's shared allocation header, the LRU's key, links and hash table slot.
const ENTRY_OVERHEAD: usize = size_of::<Entry>() + 2 * size_of::<usize>() + 6 * size_of::<usize>();

/// Subjects by prepared id, least recently used forgotten first, bounded by
/// [`ENTRIES`] and [`MAX_BYTES`]. Created empty (no allocation until the first EXECUTE).
#[derive(Default)]
pub struct PreparedSubjects {
    entries: Option<LruCache<Box<[u8]>, Entry>>,
    /// The sum of the entries' bytes.
    bytes: usize,
}

/// A rendered subject with what it was rendered from: an entry serves only the same text,
/// keyspace and table (should the id come to stand for another statement, it is rendered
/// again).
struct Entry {
    text: Box<str>,
    table: Option<Box<str>>,
    subject: Subject,
    bytes: usize,
}

impl PreparedSubjects {
    /// The subject of an EXECUTE of `id`, prepared from `text` about `keyspace` and
    /// `table`: the one kept if it was rendered from the same, otherwise rendered now (and
    /// kept if it fits).
    pub fn get(
        &mut self,
        renderer: &mut Renderer,
        id: &[u8],
        text: &str,
        keyspace: Option<&str>,
        table: Option<&str>,
    ) -> Subject {
        let entries = self.entries.get_or_insert_with(|| {
            LruCache::new(NonZeroUsize::new(ENTRIES).unwrap_or(NonZeroUsize::MIN))
        });
        if let Some(entry) = entries.get(id) {
            if *entry.text == *text
                && entry.table.as_deref() == table
                && entry.subject.keyspace() == keyspace
            {
                return entry.subject.clone();
            }
        }
        let subject = renderer.subject(keyspace, table, Some(text), Some(id));
        if let Some(old) = entries.pop(id) {
            self.bytes = self.bytes.saturating_sub(old.bytes);
        }
        let bytes = ENTRY_OVERHEAD
            .saturating_add(id.len())
            .saturating_add(text.len())
            .saturating_add(table.map_or(0, str::len))
            .saturating_add(subject.len());
        if bytes > MAX_BYTES {
            return subject;
        }
        while self.bytes.saturating_add(bytes) > MAX_BYTES {
            let Some((_, evicted)) = entries.pop_lru() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(evicted.bytes);
        }
        let entry = Entry {
            text: text.into(),
            table: table.map(Into::into),
            subject: subject.clone(),
            bytes,
        };
        // `id` is not in the map any more: what `push` returns was evicted for the count.
        if let Some((_, evicted)) = entries.push(id.into(), entry) {
            self.bytes = self.bytes.saturating_sub(evicted.bytes);
        }
        self.bytes = self.bytes.saturating_add(bytes);
        subject
    }

    /// How many ids are kept.
    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, LruCache::len)
    }

    /// Whether no id is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes kept, by estimate.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Peer, Settings, Who};
    use super::*;

    fn renderer() -> Renderer {
        Renderer::new(&Settings::default(), &Peer::default(), &Who::default())
    }

    #[test]
    fn a_kept_subject_is_shared_and_serves_only_what_it_was_rendered_from() {
        let mut r = renderer();
        let mut cache = PreparedSubjects::default();
        assert!(cache.is_empty());
        let text = "SELECT * FROM t WHERE k = ?";
        let a = cache.get(&mut r, b"\x01", text, Some("ks"), Some("t"));
        let b = cache.get(&mut r, b"\x01", text, Some("ks"), Some("t"));
        assert!(std::rc::Rc::ptr_eq(
            &a.bytes_for_test(),
            &b.bytes_for_test()
        ));
        assert_eq!(cache.len(), 1);
        // The id now stands for another keyspace: rendered again, and replaced.
        let c = cache.get(&mut r, b"\x01", text, Some("other"), Some("t"));
        assert_eq!(c.keyspace(), Some("other"));
        assert_eq!(cache.len(), 1);
        let d = cache.get(&mut r, b"\x01", "SELECT 1", Some("other"), Some("t"));
        assert_ne!(c, d);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn bounded_by_entries_and_bytes() {
        let mut r = renderer();
        let mut cache = PreparedSubjects::default();
        for i in 0..100u8 {
            let _ = cache.get(&mut r, &[i], "SELECT * FROM t", Some("ks"), Some("t"));
        }
        assert_eq!(cache.len(), ENTRIES);
        let big = "x".repeat(MAX_BYTES / 4);
        for i in 0..10u8 {
            let _ = cache.get(&mut r, &[i], &big, None, None);
            assert!(cache.bytes() <= MAX_BYTES);
        }
        assert!(cache.len() < 4);
        // Larger than the bound on its own: rendered, not kept.
        let huge = "y".repeat(MAX_BYTES);
        let before = cache.len();
        let s = cache.get(&mut r, b"\xff", &huge, None, None);
        assert!(s.len() > MAX_BYTES && cache.len() == before);
    }
}
