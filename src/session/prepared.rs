//! The prepared registry: which statement a prepared id stands for.
//!
//! RESULT Prepared carries no statement text, so the session remembers each PREPARE by its
//! stream id and, when the server answers with an id, records the classified statement here.
//! Entries come only from the server's answers, never from what a client claims. Prepared ids
//! are the same on every connection to a cluster, so one registry serves all connections of a
//! worker; it is bounded, and an EXECUTE of an id it no longer holds is answered Unprepared,
//! which makes the driver prepare again.

use std::num::NonZeroUsize;
use std::rc::Rc;

use lru::LruCache;

use crate::classify::Statement;

/// A bounded map from prepared id to the statement it was prepared from.
pub struct PreparedRegistry {
    entries: LruCache<Vec<u8>, Rc<Prepared>>,
}

/// A prepared statement as the proxy knows it.
#[derive(Debug)]
pub struct Prepared {
    /// The text the client prepared (for the audit log).
    pub text: String,
    /// The statement classified when it was prepared, with the keyspace of that time.
    pub statement: Statement<'static>,
}

impl PreparedRegistry {
    pub fn new(capacity: usize) -> Self {
        PreparedRegistry {
            entries: LruCache::new(NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    pub fn insert(&mut self, id: &[u8], prepared: Rc<Prepared>) {
        self.entries.put(id.to_vec(), prepared);
    }

    pub fn get(&mut self, id: &[u8]) -> Option<Rc<Prepared>> {
        self.entries.get(id).cloned()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
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
        })
    }

    #[test]
    fn holds_what_was_inserted_and_forgets_the_least_recent() {
        let mut r = PreparedRegistry::new(2);
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
        let mut r = PreparedRegistry::new(0);
        r.insert(b"a", prepared("SELECT * FROM ks.a"));
        assert!(r.get(b"a").is_some());
    }
}
