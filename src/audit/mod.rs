//! Audit records: one per decision, filtered like Cassandra's audit log and formatted as one
//! line each (JSON, or Cassandra's own `user:...|host:...` line). No NGINX types: the session
//! builds records and formats them; the NGINX layer only writes the lines.
//!
//! What never reaches a line: tokens and passwords (the handshake's credentials are never
//! recorded, and `PASSWORD '...'` in role statements is masked), and bound values (only a
//! statement's text is recorded; the values of EXECUTE and of bound QUERY/BATCH are never
//! read). Literals in the text may be masked too (`redact_literals`).
//!
//! What does not change is rendered once: a session's connection and identity fields by its
//! [`Renderer`], a statement's fields as a [`Subject`] (kept per prepared id by
//! [`PreparedSubjects`]), so that writing a line is mostly copying.

mod cache;
mod format;
mod redact;
#[cfg(test)]
mod reference;
mod time;

pub use cache::PreparedSubjects;
pub use format::{hex, string as json_string, write_hex, Renderer, Subject};
pub use redact::redact;
pub use time::{iso8601_ms, iso8601_ms_bytes};

use std::rc::Rc;

use crate::classify::Category;

/// How lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    #[default]
    Json,
    /// Cassandra's audit line: `user:..|host:..|source:..|port:..|timestamp:..|type:..|...`.
    Cassandra,
}

/// Which records are written, as Cassandra's audit log options (`included_keyspaces`,
/// `excluded_categories`, ...), plus denials only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// Only these categories; `None`: all.
    pub categories: Option<Vec<Category>>,
    pub exclude_categories: Vec<Category>,
    /// Only records about these keyspaces (records with no keyspace always pass); `None`: all.
    pub keyspaces: Option<Vec<String>>,
    /// Records about these keyspaces are not written; by default Cassandra's own system ones.
    pub exclude_keyspaces: Vec<String>,
    /// Only denials, failed logins and protocol violations.
    pub denied_only: bool,
}

/// Cassandra's default `excluded_keyspaces`.
pub const SYSTEM_KEYSPACES: [&str; 3] = ["system", "system_schema", "system_virtual_schema"];

impl Default for Filter {
    fn default() -> Self {
        Filter {
            categories: None,
            exclude_categories: Vec::new(),
            keyspaces: None,
            exclude_keyspaces: SYSTEM_KEYSPACES.iter().map(|k| k.to_string()).collect(),
            denied_only: false,
        }
    }
}

impl Filter {
    /// Whether a record of this category, about this keyspace, is written.
    pub fn wants(&self, category: Category, keyspace: Option<&str>, denied: bool) -> bool {
        if self.denied_only && !denied {
            return false;
        }
        if let Some(only) = &self.categories {
            if !only.contains(&category) {
                return false;
            }
        }
        if self.exclude_categories.contains(&category) {
            return false;
        }
        let Some(keyspace) = keyspace else {
            return true;
        };
        if let Some(only) = &self.keyspaces {
            if !only.iter().any(|k| k == keyspace) {
                return false;
            }
        }
        !self.exclude_keyspaces.iter().any(|k| k == keyspace)
    }
}

/// What a server's audit log records, and how.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub format: Format,
    pub filter: Filter,
    /// Mask every literal of a statement's text (strings, numbers, UUIDs, blobs) as `?`.
    pub redact_literals: bool,
}

/// The connection a record belongs to, known when it opens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// NGINX's connection number: unique across the workers of one master.
    pub session: u64,
    /// The client's address and port.
    pub client: String,
    /// The address and port the client connected to.
    pub server: String,
}

/// Who the connection is, once known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Who {
    pub principal: Option<String>,
    pub roles: Vec<String>,
    /// `jwt` or `mtls`; empty before authentication.
    pub auth: &'static str,
}

/// What kind of event a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Login,
    Request,
    Violation,
    Session,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Login => "login",
            Event::Request => "request",
            Event::Violation => "violation",
            Event::Session => "session",
        }
    }
}

/// What Cassandra answered an allowed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// ERROR with this code.
    Error(i32),
    /// The connection ended before the response.
    NoResponse,
}

/// One statement of a BATCH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    pub operation: &'static str,
    /// Its keyspace, table, text and prepared id, rendered.
    pub subject: Subject,
}

/// The totals of a connection, for the record written when it ends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub requests: u64,
    pub denied: u64,
    pub duration_ms: u64,
    pub client_frames: u64,
    pub server_frames: u64,
}

/// One audit record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Unix time in milliseconds.
    pub time_ms: u64,
    pub event: Event,
    pub category: Category,
    /// Cassandra's operation type (`SELECT`, `LOGIN_ERROR`, ...).
    pub operation: &'static str,
    /// What it is about: keyspace, table, statement text (masked as configured) and, for
    /// an EXECUTE, the prepared id; rendered by the session's [`Renderer`].
    pub subject: Option<Subject>,
    /// The prepared id a PREPARE's answer gave, when the subject has none.
    pub prepared_id: Option<Vec<u8>>,
    pub batch: Vec<Child>,
    /// The request's stream id.
    pub stream: Option<i16>,
    /// `Some(true)` allowed, `Some(false)` denied; `None` for records that decide nothing.
    pub allowed: Option<bool>,
    /// Forwarded by a server in dry run (`cql_dry_run on`) although the gate would have
    /// refused it for `reason`: the decision reads `would_deny`.
    pub would_deny: bool,
    /// Why it was denied (the client's error message), or what went wrong.
    pub reason: Option<String>,
    /// The policy rule that decided (shared: a session's requests are mostly decided by the
    /// same few rules).
    pub rule: Option<Rc<str>>,
    pub outcome: Option<Outcome>,
    /// Microseconds from forwarding the request to its response.
    pub latency_us: Option<u64>,
    pub summary: Option<Summary>,
}

impl Record {
    /// A record with only its kind set.
    pub fn new(time_ms: u64, event: Event, category: Category, operation: &'static str) -> Self {
        Record {
            time_ms,
            event,
            category,
            operation,
            subject: None,
            prepared_id: None,
            batch: Vec::new(),
            stream: None,
            allowed: None,
            would_deny: false,
            reason: None,
            rule: None,
            outcome: None,
            latency_us: None,
            summary: None,
        }
    }

    /// The keyspace the record is about, for the filter.
    pub fn keyspace(&self) -> Option<&str> {
        self.subject.as_ref()?.keyspace()
    }

    /// Whether the record tells of something refused: a denial, a failed login, a
    /// violation, or what a server in dry run would have refused.
    pub fn is_denial(&self) -> bool {
        self.allowed == Some(false) || self.would_deny || self.event == Event::Violation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_keyspaces_are_excluded_by_default_and_keyless_records_pass() {
        let f = Filter::default();
        assert!(!f.wants(Category::Query, Some("system"), false));
        assert!(!f.wants(Category::Query, Some("system_schema"), true));
        assert!(f.wants(Category::Query, Some("system_auth"), false));
        assert!(f.wants(Category::Auth, None, false));
    }

    #[test]
    fn included_and_excluded_categories_and_keyspaces() {
        let f = Filter {
            categories: Some(vec![Category::Dml, Category::Ddl]),
            exclude_categories: vec![Category::Ddl],
            keyspaces: Some(vec!["shop".into()]),
            exclude_keyspaces: vec![],
            denied_only: false,
        };
        assert!(f.wants(Category::Dml, Some("shop"), false));
        assert!(!f.wants(Category::Ddl, Some("shop"), false));
        assert!(!f.wants(Category::Query, Some("shop"), false));
        assert!(!f.wants(Category::Dml, Some("other"), false));
        assert!(f.wants(Category::Dml, None, false));
    }

    #[test]
    fn denied_only_keeps_denials() {
        let f = Filter {
            denied_only: true,
            ..Filter::default()
        };
        assert!(!f.wants(Category::Query, Some("shop"), false));
        assert!(f.wants(Category::Query, Some("shop"), true));
    }
}
