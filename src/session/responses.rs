//! Responses the gate reads: what a RESULT teaches about the request it answers (a
//! prepared id, a keyspace change, the columns of a topology answer), and the end of the
//! request's stream, its in-flight hold and its audit record.

use std::rc::Rc;

use crate::codec::messages::{strip_prefixes, ResultBody};
use crate::codec::{Header, Opcode};
use crate::topology::Table;

use super::{Prepared, Session};

impl Session {
    pub(super) fn is_pending(&self, stream: i16) -> bool {
        self.pending.iter().any(|(s, _)| *s == stream)
    }

    pub(super) fn take_pending(&mut self, stream: i16) -> Option<Pending> {
        let i = self.pending.iter().position(|(s, _)| *s == stream)?;
        Some(self.pending.swap_remove(i).1)
    }

    /// A response, whether forwarded as it came or held: completes a pending request, and
    /// the audit record of its request.
    pub(super) fn on_response(&mut self, header: &Header, body: Option<&[u8]>) {
        if !header.is_response || header.opcode == Opcode::Event {
            return;
        }
        if let Some((forwarded_us, holds)) = self.streams.remove(header.stream) {
            if holds {
                self.release_request();
            }
            self.meter_response(header, body, forwarded_us);
        }
        if self.keyspace_change == Some(header.stream) {
            self.keyspace_change = None;
        }
        let mut prepared_id = None;
        if !self.pending.is_empty() {
            if let Some(pending) = self.take_pending(header.stream) {
                prepared_id = self.complete_pending(pending, header, body);
            }
        }
        if self.audit.is_some() {
            self.audit_response(header, body, prepared_id);
        }
    }

    /// A prepared SELECT on a system table the proxy rewrites keeps the result columns its
    /// PREPARE's answer announced: its EXECUTE results may come without them.
    pub(super) fn with_result_columns(
        &self,
        prepared: Rc<Prepared>,
        body: &[u8],
        version: u8,
    ) -> Rc<Prepared> {
        if self.topology_table(&prepared.statement).is_none() {
            return prepared;
        }
        match crate::topology::Columns::from_prepared(body, version) {
            Ok(Some(columns)) => {
                let mut owned = Rc::unwrap_or_clone(prepared);
                owned.columns = Some(columns);
                Rc::new(owned)
            }
            _ => prepared,
        }
    }

    /// Learns what a PREPARE or USE did from its RESULT; returns a prepared id.
    pub(super) fn complete_pending<'b>(
        &mut self,
        pending: Pending,
        header: &Header,
        body: Option<&'b [u8]>,
    ) -> Option<&'b [u8]> {
        let (Opcode::Result, Some(body)) = (header.opcode, body) else {
            return None;
        };
        let (_, body) = strip_prefixes(header, body).ok()?;
        match (pending, ResultBody::decode(body, header.version)) {
            (Pending::Prepare(prepared), Ok(ResultBody::Prepared { id, .. })) => {
                let prepared = self.with_result_columns(prepared, body, header.version);
                let mut shared = self.shared.borrow_mut();
                let before = shared.prepared.stats();
                shared.prepared.insert(id, prepared);
                let after = shared.prepared.stats();
                drop(shared);
                self.meter_cache(crate::metrics::Cache::Prepared, before, after);
                Some(id)
            }
            (Pending::Use, Ok(ResultBody::SetKeyspace(keyspace))) => {
                self.keyspace = Some(keyspace.to_string());
                None
            }
            _ => None,
        }
    }
}

/// A request waiting for its response, by stream id.
pub(super) enum Pending {
    /// A PREPARE: its RESULT Prepared names the id of this statement.
    Prepare(Rc<Prepared>),
    /// A keyspace change (QUERY USE, or EXECUTE of a prepared USE): its RESULT Set_keyspace
    /// changes the connection's keyspace.
    Use,
    /// A SELECT on a system table whose rows name nodes: its RESULT is held and rewritten
    /// (`cql_topology`). An EXECUTE carries its prepared statement, whose result columns
    /// stand in for a result sent without metadata.
    Topology {
        table: Table,
        prepared: Option<Rc<Prepared>>,
    },
}
