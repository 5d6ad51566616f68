//! Authorization of every request: QUERY, PREPARE, EXECUTE and every BATCH child.
//!
//! A request goes on only when the policy allows every statement it carries. A denied one
//! is answered ERROR 0x2100 on its stream, worded like Cassandra; an EXECUTE (or a BATCH
//! child) of an id the prepared registry does not hold is answered ERROR 0x2500 Unprepared,
//! which makes the driver prepare it again through the proxy.

use std::rc::Rc;

use crate::classify::{classify, Flags, Kind, Statement};
use crate::codec::messages::Register;
use crate::codec::messages::{
    codes, strip_prefixes, Batch, BatchStatement, BatchType, Execute, Prepare, Query,
};
use crate::codec::{CodecError, Header, Opcode};
use crate::topology::{Table, Topology};

use super::audit::Decided;
use super::{Fault, Fed, Pending, Prepared, Session};
use crate::classify::Category;
use crate::metrics::{Cache, Decision, DenialReason};
use crate::policy::GuardRefusal;

/// What the proxy answers a request it does not forward.
pub(super) enum Refusal {
    /// Denied: the reason the client reads, the policy rule that decided (if one did), and
    /// the class of the reason for the metrics.
    Unauthorized(String, Option<String>, DenialReason),
    /// A statement Cassandra would refuse as it is: answered as Cassandra answers it
    /// (0x2000 SyntaxException, 0x2200 InvalidRequest), never forwarded, audited as a denial.
    Refused {
        code: i32,
        reason: String,
    },
    Unprepared(Vec<u8>),
    /// Over a guardrail of the identity's roles: ERROR 0x2200 Invalid, as Cassandra answers
    /// its own guardrails.
    Guardrail(GuardRefusal),
    /// Over a rate or in-flight limit (`cql_limit_req`, `cql_limit_in_flight`), or a limit
    /// zone is full: ERROR 0x1001 Overloaded, which drivers back off from.
    Limited {
        reason: String,
        class: DenialReason,
    },
}

impl Refusal {
    /// The client's message, the rule for the audit line, and the class for the metrics,
    /// of a refusal a dry run forwards.
    pub(super) fn noted(self) -> (String, Option<String>, DenialReason) {
        match self {
            Refusal::Unauthorized(reason, rule, class) => (reason, rule, class),
            Refusal::Guardrail(g) => (g.reason, Some(g.rule), DenialReason::Guardrail),
            Refusal::Limited { reason, class } => (reason, None, class),
            Refusal::Refused { reason, .. } => (reason, None, DenialReason::InvalidRequest),
            Refusal::Unprepared(_) => (String::new(), None, DenialReason::InvalidRequest),
        }
    }
}

impl Session {
    /// Whether the session reads the body of a client message of this kind.
    pub(super) fn needs_request_body(&self, opcode: Opcode) -> bool {
        matches!(
            opcode,
            Opcode::Startup
                | Opcode::AuthResponse
                | Opcode::Query
                | Opcode::Prepare
                | Opcode::Execute
                | Opcode::Batch
        ) || (opcode == Opcode::Register && self.config.topology != Topology::Off)
    }

    /// A whole client message; says whether it goes on to the server.
    pub(super) fn on_request(
        &mut self,
        header: &Header,
        body: &[u8],
        now: u64,
    ) -> Result<bool, Fed> {
        match header.opcode {
            Opcode::Startup => {
                self.on_startup(header, body);
                if self.auth == super::AuthState::Startup {
                    self.auth = super::AuthState::UpstreamAnswer {
                        stream: header.stream,
                    };
                }
                Ok(true)
            }
            Opcode::AuthResponse => self.on_auth_response(header, body, now),
            Opcode::Query | Opcode::Prepare | Opcode::Execute | Opcode::Batch => {
                self.authorize_request(header, body, now)
            }
            Opcode::Register => {
                self.on_register(header, body);
                Ok(true)
            }
            _ => Ok(true),
        }
    }

    fn authorize_request(&mut self, header: &Header, body: &[u8], now: u64) -> Result<bool, Fed> {
        let stream = header.stream;
        let body = match strip_prefixes(header, body) {
            Ok((_, rest)) => rest,
            Err(error) => return Err(self.malformed(header, error)),
        };
        let bytes = body.len();
        self.would_deny = None;
        let outcome = match header.opcode {
            Opcode::Query => match Query::decode(body, header.version) {
                Ok(query) => self.authorize_query(stream, &query, bytes, now),
                Err(error) => return Err(self.malformed(header, error)),
            },
            Opcode::Prepare => match Prepare::decode(body, header.version) {
                Ok(prepare) => self.authorize_prepare(stream, &prepare, now),
                Err(error) => return Err(self.malformed(header, error)),
            },
            Opcode::Execute => match Execute::decode(body, header.version) {
                Ok(execute) => self.authorize_execute(stream, &execute, bytes, now),
                Err(error) => return Err(self.malformed(header, error)),
            },
            Opcode::Batch => match Batch::decode(body, header.version) {
                Ok(batch) => self.authorize_batch(stream, &batch, bytes, now),
                Err(error) => return Err(self.malformed(header, error)),
            },
            _ => Ok(()),
        };
        let outcome = outcome.and_then(|()| self.charge_request());
        self.requests += 1;
        let category = self.request_category;
        match outcome {
            Ok(()) => {
                match self.would_deny.take().map(Refusal::noted) {
                    None => {
                        self.meter_request(category, Decision::Allowed);
                        self.audit_decided(Decided::Allowed);
                    }
                    Some((reason, rule, class)) => {
                        self.meter_request(category, Decision::WouldDeny);
                        if let Some(meter) = self.meter() {
                            meter.would_deny(class);
                        }
                        self.audit_decided(Decided::WouldDeny { reason, rule });
                    }
                }
                Ok(true)
            }
            Err(Refusal::Guardrail(refusal)) => {
                self.denied += 1;
                self.meter_request(category, Decision::Denied);
                self.meter_denial_reason(DenialReason::Guardrail);
                let reason = refusal.reason;
                self.answer_client(|f, out| f.write_error(stream, codes::INVALID, &reason, out));
                self.audit_decided(Decided::Denied {
                    reason,
                    rule: Some(refusal.rule),
                });
                Ok(false)
            }
            Err(Refusal::Limited { reason, class }) => {
                self.denied += 1;
                self.meter_request(category, Decision::Limited);
                self.meter_denial_reason(class);
                self.answer_client(|f, out| f.write_error(stream, codes::OVERLOADED, &reason, out));
                self.audit_decided(Decided::Denied { reason, rule: None });
                Ok(false)
            }
            Err(Refusal::Unauthorized(reason, rule, class)) => {
                self.denied += 1;
                self.meter_request(category, Decision::Denied);
                self.meter_denial_reason(class);
                self.answer_client(|f, out| {
                    f.write_error(stream, codes::UNAUTHORIZED, &reason, out)
                });
                self.audit_decided(Decided::Denied { reason, rule });
                Ok(false)
            }
            Err(Refusal::Refused { code, reason }) => {
                self.denied += 1;
                self.meter_request(category, Decision::Denied);
                self.meter_denial_reason(if code == codes::SYNTAX_ERROR {
                    DenialReason::SyntaxError
                } else {
                    DenialReason::InvalidRequest
                });
                self.answer_client(|f, out| f.write_error(stream, code, &reason, out));
                self.audit_decided(Decided::Denied { reason, rule: None });
                Ok(false)
            }
            Err(Refusal::Unprepared(id)) => {
                self.meter_request(category, Decision::Unprepared);
                let message = format!(
                    "Prepared query with ID {} not found (the proxy does not know it; prepare it again)",
                    crate::audit::hex(&id)
                );
                self.answer_client(|f, out| f.write_unprepared(stream, &id, &message, out));
                self.audit_decided(Decided::Answered {
                    code: codes::UNPREPARED,
                    reason: message,
                });
                Ok(false)
            }
        }
    }

    /// A request whose body cannot be read is a protocol error: the connection ends.
    fn malformed(&mut self, header: &Header, error: CodecError) -> Fed {
        let message = format!("Invalid {} message: {error}", header.opcode.name());
        self.refuse_message(
            header.stream,
            codes::PROTOCOL_ERROR,
            &message,
            Fault::Codec(error),
        )
    }

    fn authorize_query(
        &mut self,
        stream: i16,
        query: &Query<'_>,
        bytes: usize,
        now: u64,
    ) -> Result<(), Refusal> {
        let keyspace = query.params.keyspace.map(str::to_string);
        let keyspace = keyspace.or_else(|| self.keyspace.clone());
        let statement = classify(query.query, keyspace.as_deref());
        self.request_category = statement.category;
        self.draft_statement(stream, query.query, &statement, false);
        self.decide(&statement, now)?;
        self.guard_text(query.query.len())?;
        self.guard_statement(&statement, &query.params, bytes)?;
        if statement.kind == Kind::Use {
            self.expect_keyspace_change(stream);
        }
        if let Some(table) = self.topology_table(&statement) {
            self.expect_response(
                stream,
                Pending::Topology {
                    table,
                    prepared: None,
                },
            );
        }
        Ok(())
    }

    fn authorize_prepare(
        &mut self,
        stream: i16,
        prepare: &Prepare<'_>,
        now: u64,
    ) -> Result<(), Refusal> {
        let keyspace = prepare.keyspace.map(str::to_string);
        let keyspace = keyspace.or_else(|| self.keyspace.clone());
        let statement = classify(prepare.query, keyspace.as_deref());
        self.request_category = Category::Prepare;
        self.draft_statement(stream, prepare.query, &statement, true);
        self.decide(&statement, now)?;
        self.guard_text(prepare.query.len())?;
        let prepared = Prepared {
            // The text is kept only for the audit log.
            text: if self.audit.is_some() {
                prepare.query.to_string()
            } else {
                String::new()
            },
            statement: statement.into_owned(),
            text_bytes: prepare.query.len(),
            columns: None,
        };
        self.expect_response(stream, Pending::Prepare(Rc::new(prepared)));
        Ok(())
    }

    fn authorize_execute(
        &mut self,
        stream: i16,
        execute: &Execute<'_>,
        bytes: usize,
        now: u64,
    ) -> Result<(), Refusal> {
        let prepared = self.prepared(execute.id);
        self.request_category = prepared
            .as_ref()
            .map_or(Category::Error, |p| p.statement.category);
        if self.audit.is_some() {
            let known = prepared.as_ref().map(|p| (p.text.as_str(), &p.statement));
            self.draft_execute(stream, execute.id, known);
        }
        let Some(prepared) = prepared else {
            return Err(Refusal::Unprepared(execute.id.to_vec()));
        };
        self.decide(&prepared.statement, now)?;
        self.guard_text(prepared.text_bytes)?;
        self.guard_statement(&prepared.statement, &execute.params, bytes)?;
        if prepared.statement.kind == Kind::Use {
            self.expect_keyspace_change(stream);
        }
        if let Some(table) = self.topology_table(&prepared.statement) {
            self.expect_response(
                stream,
                Pending::Topology {
                    table,
                    prepared: Some(prepared),
                },
            );
        }
        Ok(())
    }

    /// A batch goes on only if every child is allowed.
    fn authorize_batch(
        &mut self,
        stream: i16,
        batch: &Batch<'_>,
        bytes: usize,
        now: u64,
    ) -> Result<(), Refusal> {
        let keyspace = batch.keyspace.map(str::to_string);
        let keyspace = keyspace.or_else(|| self.keyspace.clone());
        self.draft_batch(stream);
        self.request_category = Category::Dml;
        let mut changes_keyspace = false;
        for child in batch.children.iter() {
            match child.statement {
                BatchStatement::Query(text) => {
                    let mut statement = classify(text, keyspace.as_deref());
                    self.draft_child(Some(text), None, Some(&statement));
                    changes_keyspace |= statement.kind == Kind::Use;
                    if batch.batch_type == BatchType::Unlogged {
                        statement.flags.insert(Flags::UNLOGGED_BATCH);
                    }
                    self.decide(&statement, now)?;
                    self.guard_text(text.len())?;
                }
                BatchStatement::Prepared(id) => {
                    let prepared = self.prepared(id);
                    let Some(prepared) = prepared else {
                        self.draft_child(None, Some(id), None);
                        return Err(Refusal::Unprepared(id.to_vec()));
                    };
                    self.draft_child(Some(&prepared.text), Some(id), Some(&prepared.statement));
                    // Cassandra refuses a USE in a batch; should one run, it is a keyspace
                    // change all the same.
                    changes_keyspace |= prepared.statement.kind == Kind::Use;
                    if batch.batch_type == BatchType::Unlogged {
                        let mut statement = prepared.statement.clone();
                        statement.flags.insert(Flags::UNLOGGED_BATCH);
                        self.decide(&statement, now)?;
                    } else {
                        self.decide(&prepared.statement, now)?;
                    }
                    self.guard_text(prepared.text_bytes)?;
                }
            }
        }
        self.guard_batch(batch.consistency.0, batch.children.len(), bytes)?;
        if changes_keyspace {
            self.expect_keyspace_change(stream);
        }
        Ok(())
    }

    /// The policy's decision on one statement, after the identity's own expiry. A statement
    /// Cassandra would refuse as it is gets Cassandra's own answer instead.
    fn decide(&mut self, statement: &Statement<'_>, now: u64) -> Result<(), Refusal> {
        if let Some(reason) = statement.syntax_error() {
            return Err(Refusal::Refused {
                code: codes::SYNTAX_ERROR,
                reason: reason.to_string(),
            });
        }
        if let Some(reason) = statement.invalid_request() {
            return Err(Refusal::Refused {
                code: codes::INVALID,
                reason: reason.to_string(),
            });
        }
        let Some(identity) = &self.identity else {
            return Err(Refusal::Unauthorized(
                "The connection is not authenticated".to_string(),
                None,
                DenialReason::Unauthenticated,
            ));
        };
        // Tokens expire as the validator sees it (with its leeway); certificates at notAfter.
        let expired = match (&self.config.jwt, identity.source) {
            (Some(validator), crate::identity::Source::Token) => validator.expired(identity, now),
            _ => identity.expires_at.is_some_and(|expiry| now > expiry),
        };
        if expired {
            return Err(Refusal::Unauthorized(
                format!(
                    "User {}: token expired; reconnect with a fresh token",
                    identity.principal
                ),
                Some("token expired".to_string()),
                DenialReason::TokenExpired,
            ));
        }
        let (Some(policy), Some(roles)) = (&self.config.policy, &self.roles) else {
            return Ok(());
        };
        let audits = self.audit.is_some();
        let mut shared = self.shared.borrow_mut();
        let before = shared.decisions.stats();
        // The rule that allowed a statement is worded only for the audit log.
        let decision = if audits {
            policy.authorize(&identity.principal, roles, statement, &mut shared.decisions)
        } else {
            policy.authorize_quietly(&identity.principal, roles, statement, &mut shared.decisions)
        };
        let after = shared.decisions.stats();
        drop(shared);
        self.meter_cache(Cache::Decision, before, after);
        if decision.allowed {
            if self.audit.is_some() {
                self.draft_rule(&decision.rule);
            }
            Ok(())
        } else {
            if !self.config.dry_run {
                self.meter_policy_denial(statement.keyspace.as_deref());
            }
            self.refuse_or_note(Refusal::Unauthorized(
                decision.reason,
                Some(decision.rule),
                DenialReason::Policy,
            ))
        }
    }

    /// The statement a prepared id stands for, if the registry holds it.
    fn prepared(&mut self, id: &[u8]) -> Option<Rc<Prepared>> {
        let prepared = self.shared.borrow_mut().prepared.get(id);
        if let Some(meter) = self.meter() {
            meter.cache_lookup(Cache::Prepared, prepared.is_some());
        }
        prepared
    }

    /// An allowed keyspace change: the requests behind it wait for its answer, which alone
    /// moves the connection's keyspace.
    fn expect_keyspace_change(&mut self, stream: i16) {
        self.keyspace_change = Some(stream);
        self.expect_response(stream, Pending::Use);
    }

    /// The system table a statement reads, if it is one whose rows the proxy rewrites
    /// (`cql_topology`): a SELECT on system.local, system.peers or system.peers_v2.
    pub(super) fn topology_table(&self, statement: &Statement<'_>) -> Option<Table> {
        if self.config.topology == Topology::Off || statement.kind != Kind::Select {
            return None;
        }
        Table::of(statement.keyspace.as_deref()?, statement.table.as_deref()?)
    }

    /// REGISTER: a connection that asks for topology or status events gets them rewritten,
    /// so its responses are watched frame by frame from now on.
    fn on_register(&mut self, header: &Header, body: &[u8]) {
        let register = strip_prefixes(header, body)
            .ok()
            .and_then(|(_, rest)| Register::decode(rest).ok());
        if let Some(register) = register {
            if register
                .events
                .iter()
                .any(|event| matches!(event, "TOPOLOGY_CHANGE" | "STATUS_CHANGE"))
            {
                self.topology_events = true;
            }
        }
    }

    /// Remembers a request whose response the session reads.
    fn expect_response(&mut self, stream: i16, pending: Pending) {
        self.pending.retain(|(s, _)| *s != stream);
        self.pending.push((stream, pending));
    }
}
