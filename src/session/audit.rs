//! The session's audit records: logins, every request decision with Cassandra's outcome,
//! protocol violations and a summary when the connection ends.
//!
//! Only built when the server has an audit log. A request's record is drafted while it is
//! decided; a denial is written at once, an allowed request waits (by stream id) for its
//! response, which gives the outcome and the latency. Lines are formatted here and taken by
//! the I/O layer with [`Session::poll_output`].
//!
//! What does not change is rendered once: the connection and identity fields when the
//! session opens and at each login (the [`audit::Renderer`]), a prepared statement's fields at
//! its first EXECUTE on the connection ([`audit::PreparedSubjects`]), and a rule's text is
//! shared by the requests it decides. An EXECUTE's record then allocates nothing.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use crate::audit::{
    self, Child, Event, Outcome, Peer, PreparedSubjects, Record, Renderer, Summary, Who,
};
use crate::classify::{Category, Operation, Statement};
use crate::codec::messages::strip_prefixes;
use crate::codec::{Header, Opcode};
use crate::identity::Identity;

use super::{Now, Session};

/// Stream ids are small integers: they hash to themselves.
#[derive(Default)]
pub(super) struct StreamHasher(u64);

impl Hasher for StreamHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_i16(&mut self, n: i16) {
        self.0 = n as u16 as u64;
    }
}

/// The audit state of a session.
pub(super) struct AuditLog {
    settings: Rc<audit::Settings>,
    peer: Peer,
    who: Who,
    /// Renders the lines, with `peer` and `who` rendered once.
    renderer: Renderer,
    /// The rendered statements of the prepared ids executed on the connection.
    prepared: PreparedSubjects,
    /// The last rule text recorded, shared by the records it decides.
    rule: Option<Rc<str>>,
    /// Formatted lines waiting to be written.
    lines: Vec<u8>,
    /// Allowed requests waiting for their response, by stream id, with the time they went on.
    inflight: HashMap<i16, (Record, u64), BuildHasherDefault<StreamHasher>>,
    opened_ms: u64,
    /// The record of the request being decided.
    draft: Option<Record>,
    /// The connection ended: nothing more is recorded.
    closed: bool,
}

impl AuditLog {
    /// The lines written and not yet polled.
    pub(super) fn lines_mut(&mut self) -> &mut Vec<u8> {
        &mut self.lines
    }

    fn write(&mut self, record: &Record) {
        self.renderer.write(record, &mut self.lines);
    }

    fn wants(&self, record: &Record) -> bool {
        !self.closed
            && self
                .settings
                .filter
                .wants(record.category, record.keyspace(), record.is_denial())
    }

    /// The subject of a statement: `text` as sent, `id` its prepared id. A prepared one is
    /// rendered once and shared.
    fn subject(
        &mut self,
        text: Option<&str>,
        id: Option<&[u8]>,
        statement: Option<&Statement<'_>>,
    ) -> audit::Subject {
        let keyspace = statement.and_then(|s| s.keyspace.as_deref());
        let table = statement.and_then(|s| s.table.as_deref());
        match (text, id) {
            (Some(text), Some(id)) => {
                self.prepared
                    .get(&mut self.renderer, id, text, keyspace, table)
            }
            _ => self.renderer.subject(keyspace, table, text, id),
        }
    }

    /// `rule` shared with the last record it decided, when it is the same.
    fn rule(&mut self, rule: &str) -> Rc<str> {
        match &self.rule {
            Some(last) if **last == *rule => Rc::clone(last),
            _ => {
                let rule: Rc<str> = Rc::from(rule);
                self.rule = Some(Rc::clone(&rule));
                rule
            }
        }
    }

    /// Renders who the records name again.
    fn identify(&mut self) {
        self.renderer.identify(&self.peer, &self.who);
    }
}

/// The keyspace a batch concerns: its statements' one keyspace, if they share one.
fn common_keyspace(children: &[Child]) -> Option<&str> {
    let first = children.first()?.subject.keyspace()?;
    children
        .iter()
        .all(|c| c.subject.keyspace() == Some(first))
        .then_some(first)
}

impl Session {
    /// Starts recording at `now`, if the server has an audit log: `peer` names the
    /// connection.
    pub fn open_audit(&mut self, peer: Peer, now: Now) {
        let Some(settings) = self.config.audit.clone() else {
            return;
        };
        self.advance(now);
        let unix_ms = now.unix_ms;
        let who = Who::default();
        let renderer = Renderer::new(&settings, &peer, &who);
        self.audit = Some(Box::new(AuditLog {
            settings,
            peer,
            who,
            renderer,
            prepared: PreparedSubjects::default(),
            rule: None,
            lines: Vec::new(),
            inflight: HashMap::default(),
            opened_ms: unix_ms,
            draft: None,
            closed: false,
        }));
    }

    /// The connection ended at `now`: requests still waiting are recorded without a
    /// response, then the session's summary (polled as [`super::Output::Audit`]).
    pub fn close(&mut self, now: Now) {
        self.advance(now);
        let Some(log) = self.audit.as_mut() else {
            return;
        };
        let mut waiting: Vec<(Record, u64)> = log.inflight.drain().map(|(_, v)| v).collect();
        waiting.sort_by_key(|(r, _)| r.time_ms);
        for (mut record, _) in waiting {
            record.outcome = Some(Outcome::NoResponse);
            log.write(&record);
        }
        let mut record = Record::new(
            self.clock.unix_ms,
            Event::Session,
            Category::Other,
            "SESSION_END",
        );
        record.summary = Some(Summary {
            requests: self.requests,
            denied: self.denied,
            duration_ms: self.clock.unix_ms.saturating_sub(log.opened_ms),
            client_frames: self.counters.client.frames,
            server_frames: self.counters.server.frames,
        });
        if log.wants(&record) {
            log.write(&record);
        }
        // The lines stay to be drained.
        log.closed = true;
    }

    /// The identity was accepted: who the records name from now on.
    pub(super) fn audit_identity(&mut self, identity: &Identity) {
        let roles = self
            .roles
            .as_ref()
            .map(|r| r.names().map(str::to_string).collect())
            .unwrap_or_default();
        if let Some(log) = self.audit.as_mut() {
            log.who = Who {
                principal: Some(identity.principal.clone()),
                roles,
                auth: identity.source.auth_method(),
            };
            log.identify();
        }
    }

    /// A login succeeded (`Ok`) or failed with a reason.
    pub(super) fn audit_login(&mut self, outcome: Result<(), &str>) {
        let time = self.clock.unix_ms;
        let Some(log) = self.audit.as_mut() else {
            return;
        };
        let operation = match outcome {
            Ok(()) => Operation::LoginSuccess,
            Err(_) => Operation::LoginError,
        };
        let mut record = Record::new(time, Event::Login, Category::Auth, operation.as_str());
        record.allowed = Some(outcome.is_ok());
        if outcome.is_ok() {
            // Dry run: a connection over its cap logged in all the same.
            if let Some((reason, _, _)) =
                self.would_deny.take().map(super::requests::Refusal::noted)
            {
                record.would_deny = true;
                record.reason = Some(reason);
            }
        }
        if let Err(reason) = outcome {
            record.reason = Some(reason.to_string());
            if log.who.principal.is_some() || !log.who.roles.is_empty() {
                log.who.principal = None;
                log.who.roles.clear();
                log.identify();
            }
        }
        if log.wants(&record) {
            log.write(&record);
        }
    }

    /// A login over its connection cap: refused, and the line names the identity that was
    /// refused (its token was valid).
    pub(super) fn audit_login_over_limit(&mut self, reason: &str) {
        let time = self.clock.unix_ms;
        let Some(log) = self.audit.as_mut() else {
            return;
        };
        let operation = Operation::LoginError.as_str();
        let mut record = Record::new(time, Event::Login, Category::Auth, operation);
        record.allowed = Some(false);
        record.reason = Some(reason.to_string());
        if log.wants(&record) {
            log.write(&record);
        }
    }

    /// The connection is ended for a protocol violation.
    pub(super) fn audit_violation(&mut self, reason: String) {
        let time = self.clock.unix_ms;
        let Some(log) = self.audit.as_mut() else {
            return;
        };
        let mut record = Record::new(
            time,
            Event::Violation,
            Category::Error,
            Operation::RequestFailure.as_str(),
        );
        record.reason = Some(reason);
        if log.wants(&record) {
            log.write(&record);
        }
    }

    /// Starts the record of a QUERY or PREPARE of `text`, classified as `statement`.
    pub(super) fn draft_statement(
        &mut self,
        stream: i16,
        text: &str,
        statement: &Statement<'_>,
        prepare: bool,
    ) {
        let time = self.clock.unix_ms;
        let Some(log) = self.audit.as_mut() else {
            return;
        };
        let (category, operation) = if prepare {
            (Category::Prepare, Operation::PrepareStatement)
        } else {
            (statement.category, statement.operation)
        };
        let mut record = Record::new(time, Event::Request, category, operation.as_str());
        record.stream = Some(stream);
        record.subject = Some(log.subject(Some(text), None, Some(statement)));
        log.draft = Some(record);
    }

    /// Starts the record of an EXECUTE of a prepared id.
    pub(super) fn draft_execute(
        &mut self,
        stream: i16,
        id: &[u8],
        prepared: Option<(&str, &Statement<'_>)>,
    ) {
        let time = self.clock.unix_ms;
        let Some(log) = self.audit.as_mut() else {
            return;
        };
        let (category, operation) = match prepared {
            Some((_, s)) => (s.category, s.operation),
            None => (Category::Error, Operation::RequestFailure),
        };
        let mut record = Record::new(time, Event::Request, category, operation.as_str());
        record.stream = Some(stream);
        let (text, statement) = prepared.unzip();
        record.subject = Some(log.subject(text, Some(id), statement));
        log.draft = Some(record);
    }

    /// Starts the record of a BATCH; its statements are added with [`Session::draft_child`].
    pub(super) fn draft_batch(&mut self, stream: i16) {
        let time = self.clock.unix_ms;
        let Some(log) = self.audit.as_mut() else {
            return;
        };
        let mut record = Record::new(
            time,
            Event::Request,
            Category::Dml,
            Operation::Batch.as_str(),
        );
        record.stream = Some(stream);
        log.draft = Some(record);
    }

    /// A statement of the BATCH being decided: its text, or its prepared id (with the
    /// prepared text when the proxy knows it).
    pub(super) fn draft_child(
        &mut self,
        text: Option<&str>,
        id: Option<&[u8]>,
        statement: Option<&Statement<'_>>,
    ) {
        let Some(log) = self.audit.as_mut() else {
            return;
        };
        let child = Child {
            operation: statement
                .map(|s| s.operation.as_str())
                .unwrap_or(Operation::RequestFailure.as_str()),
            subject: log.subject(text, id, statement),
        };
        if let Some(draft) = log.draft.as_mut() {
            draft.batch.push(child);
        }
    }

    /// The rule that allowed a statement of the request being decided.
    pub(super) fn draft_rule(&mut self, rule: &str) {
        let Some(log) = self.audit.as_mut() else {
            return;
        };
        let Some(draft) = log.draft.as_ref() else {
            return;
        };
        let joined = match draft.rule.as_deref() {
            Some(rules) if !rules.split("; ").any(|r| r == rule) => {
                Some(Rc::from(format!("{rules}; {rule}")))
            }
            Some(_) => return,
            None => None,
        };
        let rule = joined.unwrap_or_else(|| log.rule(rule));
        if let Some(draft) = log.draft.as_mut() {
            draft.rule = Some(rule);
        }
    }

    /// The request was decided: a denial (`Err(reason, rule)`) is written now; an allowed
    /// request waits for its response; a request the proxy answered itself (an unknown
    /// prepared id) is written with that answer's code.
    pub(super) fn audit_decided(&mut self, decision: Decided) {
        let now = self.clock.monotonic_us;
        let Some(log) = self.audit.as_mut() else {
            return;
        };
        let Some(mut record) = log.draft.take() else {
            return;
        };
        if !record.batch.is_empty() {
            let keyspace = common_keyspace(&record.batch);
            record.subject = keyspace.map(|ks| log.renderer.subject(Some(ks), None, None, None));
        }
        match decision {
            Decided::Allowed => {
                record.allowed = Some(true);
                if log.wants(&record) {
                    if let Some(stream) = record.stream {
                        log.inflight.insert(stream, (record, now));
                    }
                }
            }
            Decided::Denied { reason, rule } => {
                record.allowed = Some(false);
                record.reason = Some(reason);
                record.rule = rule.map(Rc::from);
                if log.wants(&record) {
                    log.write(&record);
                }
            }
            Decided::WouldDeny { reason, rule } => {
                record.allowed = Some(true);
                record.would_deny = true;
                record.reason = Some(reason);
                record.rule = rule.map(Rc::from);
                if log.wants(&record) {
                    if let Some(stream) = record.stream {
                        log.inflight.insert(stream, (record, now));
                    }
                }
            }
            Decided::Answered { code, reason } => {
                record.outcome = Some(Outcome::Error(code));
                record.reason = Some(reason);
                if log.wants(&record) {
                    log.write(&record);
                }
            }
        }
    }

    /// Whether an allowed request on `stream` waits for its response.
    pub(super) fn audit_awaits(&self, stream: i16) -> bool {
        self.audit
            .as_ref()
            .is_some_and(|log| !log.inflight.is_empty() && log.inflight.contains_key(&stream))
    }

    /// A response from Cassandra: completes the record of its request.
    pub(super) fn audit_response(
        &mut self,
        header: &Header,
        body: Option<&[u8]>,
        prepared_id: Option<&[u8]>,
    ) {
        let now = self.clock.monotonic_us;
        let Some(log) = self.audit.as_mut() else {
            return;
        };
        if log.inflight.is_empty() || !header.is_response {
            return;
        }
        let Some((mut record, started)) = log.inflight.remove(&header.stream) else {
            return;
        };
        record.outcome = Some(match header.opcode {
            Opcode::Error => Outcome::Error(error_code(header, body).unwrap_or(0)),
            _ => Outcome::Success,
        });
        record.latency_us = Some(now.saturating_sub(started));
        let has_id = record
            .subject
            .as_ref()
            .is_some_and(audit::Subject::has_prepared_id);
        if !has_id && record.prepared_id.is_none() {
            record.prepared_id = prepared_id.map(<[u8]>::to_vec);
        }
        log.write(&record);
    }
}

/// How a request was decided, for its record.
pub(super) enum Decided {
    Allowed,
    Denied {
        reason: String,
        rule: Option<String>,
    },
    Answered {
        code: i32,
        reason: String,
    },
    /// Forwarded by a server in dry run, though the gate would have refused it.
    WouldDeny {
        reason: String,
        rule: Option<String>,
    },
}

/// The code of an ERROR body (its first four bytes, after any prefixes).
fn error_code(header: &Header, body: Option<&[u8]>) -> Option<i32> {
    let (_, rest) = strip_prefixes(header, body?).ok()?;
    let bytes: [u8; 4] = rest.get(..4)?.try_into().ok()?;
    Some(i32::from_be_bytes(bytes))
}
