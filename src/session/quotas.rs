//! What one identity may use of the cluster: a request rate, connections and requests in
//! flight, each counted per key in a zone all workers share ([`crate::limits`]), and the
//! guardrails of its roles (`guardrails = { ... }` of the policy).
//!
//! The keys are made once, when the identity logs in: the key template of each limit
//! (`cql_limit_req_zone $cql_principal ...`) rendered for the identity and the connection,
//! then hashed by the zone. A request then costs one compare-and-swap per rate limit and
//! one per in-flight cap; a session without limits pays nothing.
//!
//! A zone full of busy keys refuses (fail closed): the request is answered Overloaded
//! with the reason, as over the limit.

use core::cell::OnceCell;
use std::rc::Rc;

use crate::classify::{Kind, Statement};
use crate::codec::messages::QueryParams;
// MAX_COUNT: what a dry run counts up to beyond a cap.
use crate::limits::{
    CountVerdict, CountZone, Counter, IdentityValues, KeyTemplate, Rate, RateVerdict, RateZone,
    Slot, MAX_COUNT,
};
use crate::metrics::DenialReason;
use crate::policy::GuardRefusal;

use super::requests::Refusal;
use super::Session;

/// A zone a configuration declares (`cql_limit_req_zone`, `cql_limit_conn_zone`): its name,
/// its key, and its memory once NGINX has mapped it.
pub struct LimitZone<Z> {
    pub name: String,
    pub key: KeyTemplate,
    memory: OnceCell<Z>,
}

impl<Z> LimitZone<Z> {
    pub fn new(name: String, key: KeyTemplate) -> Self {
        LimitZone {
            name,
            key,
            memory: OnceCell::new(),
        }
    }

    /// The zone's memory is mapped: sessions count into it from now on.
    pub fn bind(&self, zone: Z) {
        let _ = self.memory.set(zone);
    }

    pub fn memory(&self) -> Option<&Z> {
        self.memory.get()
    }
}

/// `cql_limit_req zone=NAME [burst=N]`.
pub struct RateLimit {
    pub zone: Rc<LimitZone<RateZone>>,
    pub rate: Rate,
    pub burst: u32,
}

/// `cql_limit_conn NAME N` (connections) or `cql_limit_in_flight NAME N` (requests).
pub struct CountLimit {
    pub zone: Rc<LimitZone<CountZone>>,
    pub counter: Counter,
    pub max: u32,
}

/// The limits of a server.
#[derive(Default)]
pub struct Quotas {
    pub rates: Vec<RateLimit>,
    pub counts: Vec<CountLimit>,
}

impl Quotas {
    pub fn is_empty(&self) -> bool {
        self.rates.is_empty() && self.counts.is_empty()
    }

    /// The variables other than the identity's that the keys use, evaluated by the I/O
    /// layer when a connection starts ([`Session::set_connection_variables`]).
    pub fn connection_variables(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        let templates = self
            .rates
            .iter()
            .map(|l| &l.zone.key)
            .chain(self.counts.iter().map(|l| &l.zone.key));
        for template in templates {
            for name in template.connection_variables() {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
        }
        names
    }
}

/// The keys of a logged-in identity and what it holds in the count zones.
#[derive(Default)]
pub(super) struct Held {
    /// Per rate limit: the key's hash in its zone.
    rates: Vec<u64>,
    /// Per count limit: the key's hash, and the slot its connection is counted in.
    counts: Vec<(u64, Option<Slot>)>,
    /// Per count limit: the slots this connection's requests in flight are counted in, with
    /// how many in each. One slot, but for a key whose first acquires in two workers raced
    /// into two: each request is given back where it was counted.
    in_flight: Vec<Vec<(Slot, u32)>>,
}

impl Session {
    /// Values of the variables the keys use besides the identity's (`$remote_addr`, ...),
    /// by name, as the connection started.
    pub fn set_connection_variables(&mut self, values: Vec<(String, Vec<u8>)>) {
        self.connection_variables = values;
    }

    /// At login: the identity's keys, and its connection counted where `cql_limit_conn`
    /// caps it. `Err`: the connection is over a cap, with the reason (in dry run it is
    /// counted all the same, and the caller only notes the refusal).
    pub(super) fn claim_quotas(&mut self) -> Result<(), (String, DenialReason)> {
        let config = Rc::clone(&self.config);
        let quotas = &config.quotas;
        if quotas.is_empty() {
            return Ok(());
        }
        // A client whose login Cassandra refused may log in again: what the first attempt
        // claimed goes back first.
        self.release_quotas();
        let Some(identity) = &self.identity else {
            return Ok(());
        };
        // `$cql_roles`: in the policy's order, as the variable and `cql-explain` give them.
        let roles: Vec<&str> = match (&config.policy, &self.roles) {
            (Some(policy), Some(roles)) => policy.roles_in_policy_order(roles).collect(),
            _ => Vec::new(),
        };
        let values = IdentityValues {
            principal: &identity.principal,
            roles: &roles,
            auth_method: identity.source.auth_method(),
        };
        let variables = &self.connection_variables;
        let mut key = Vec::with_capacity(64);
        let mut hash_of = |zone_key: &KeyTemplate, hash: &dyn Fn(&[u8]) -> u64| {
            let connection: Vec<&[u8]> = zone_key
                .connection_variables()
                .iter()
                .map(|name| {
                    variables
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or(&[][..], |(_, v)| v.as_slice())
                })
                .collect();
            key.clear();
            zone_key.render(&values, &connection, &mut key);
            hash(&key)
        };
        let mut held = Held::default();
        for limit in &quotas.rates {
            let hash = match limit.zone.memory() {
                Some(zone) => hash_of(&limit.zone.key, &|k| zone.hash(k)),
                None => 0,
            };
            held.rates.push(hash);
        }
        let mut refusal = None;
        for limit in &quotas.counts {
            let Some(zone) = limit.zone.memory() else {
                held.counts.push((0, None));
                held.in_flight.push(Vec::new());
                continue;
            };
            let hash = hash_of(&limit.zone.key, &|k| zone.hash(k));
            let mut slot = None;
            if limit.counter == Counter::Connections {
                match zone.acquire(hash, Counter::Connections, limit.max) {
                    CountVerdict::Held(s) => slot = Some(s),
                    CountVerdict::Limited { current } => {
                        refusal.get_or_insert_with(|| {
                            format!(
                                "Too many connections for user {}: {current} open, the limit of \
                                 zone {} is {} (cql_limit_conn); the connection is refused",
                                identity.principal, limit.zone.name, limit.max
                            )
                        });
                        if config.dry_run {
                            // Counted all the same: the connection is open.
                            slot = held_anyway(zone.acquire(hash, Counter::Connections, MAX_COUNT));
                        }
                    }
                    CountVerdict::Full => {
                        refusal.get_or_insert_with(|| full(&limit.zone.name, "connection"));
                    }
                }
            }
            held.counts.push((hash, slot));
            held.in_flight.push(Vec::new());
        }
        self.held = held;
        match refusal {
            Some(reason) => Err((reason, DenialReason::ConnectionLimit)),
            None => Ok(()),
        }
    }

    /// Charges an allowed request to the identity's rate and in-flight limits. A request
    /// that goes on holds one request in flight of every cap until its answer
    /// ([`Session::release_request`]); one refused takes nothing.
    pub(super) fn charge_request(&mut self) -> Result<(), Refusal> {
        let config = Rc::clone(&self.config);
        let quotas = &config.quotas;
        if quotas.is_empty() {
            return Ok(());
        }
        let now = self.clock.monotonic_us;
        for (i, limit) in quotas.rates.iter().enumerate() {
            let Some(&hash) = self.held.rates.get(i) else {
                continue;
            };
            let Some(zone) = limit.zone.memory() else {
                continue;
            };
            let reason = match zone.acquire(hash, &limit.rate, limit.burst, now) {
                RateVerdict::Allowed => continue,
                RateVerdict::Limited { .. } => format!(
                    "Rate limit exceeded for user {}: zone {} allows {} with a burst of {} \
                     (cql_limit_req); the request was not run",
                    self.principal(),
                    limit.zone.name,
                    limit.rate,
                    limit.burst
                ),
                RateVerdict::Full => full(&limit.zone.name, "request"),
            };
            self.limited(reason, DenialReason::RateLimit)?;
        }
        for i in 0..quotas.counts.len() {
            let (Some(limit), Some(&(hash, _))) = (quotas.counts.get(i), self.held.counts.get(i))
            else {
                continue;
            };
            let Some(zone) = limit.zone.memory() else {
                continue;
            };
            if limit.counter != Counter::InFlight {
                continue;
            }
            let (slot, reason) = match zone.acquire(hash, Counter::InFlight, limit.max) {
                CountVerdict::Held(slot) => (Some(slot), None),
                CountVerdict::Limited { current } => {
                    let reason = format!(
                        "Too many requests in flight for user {}: {current} at a time, the limit \
                         of zone {} is {} (cql_limit_in_flight); the request was not run",
                        self.principal(),
                        limit.zone.name,
                        limit.max
                    );
                    // In dry run the request goes on, so it is counted all the same.
                    let slot = config
                        .dry_run
                        .then(|| held_anyway(zone.acquire(hash, Counter::InFlight, MAX_COUNT)))
                        .flatten();
                    (slot, Some(reason))
                }
                CountVerdict::Full => (None, Some(full(&limit.zone.name, "request"))),
            };
            if let (Some(slot), Some(held)) = (slot, self.held.in_flight.get_mut(i)) {
                match held.iter_mut().find(|(s, _)| *s == slot) {
                    Some((_, n)) => *n += 1,
                    None => held.push((slot, 1)),
                }
            }
            if let Some(reason) = reason {
                if let Err(refusal) = self.limited(reason, DenialReason::InFlightLimit) {
                    // What this request took of the caps before this one goes back.
                    for j in 0..i {
                        self.release_in_flight(j);
                    }
                    return Err(refusal);
                }
            }
        }
        self.holds_request = true;
        Ok(())
    }

    fn principal(&self) -> &str {
        self.identity.as_ref().map_or("", |i| i.principal.as_str())
    }

    /// One request of this connection in flight of cap `i` is answered.
    fn release_in_flight(&mut self, i: usize) {
        let Some(limit) = self.config.quotas.counts.get(i) else {
            return;
        };
        if limit.counter != Counter::InFlight {
            return;
        }
        let (Some(zone), Some(held)) = (limit.zone.memory(), self.held.in_flight.get_mut(i)) else {
            return;
        };
        if let Some((slot, n)) = held.iter_mut().find(|(_, n)| *n > 0) {
            *n -= 1;
            zone.release(*slot, Counter::InFlight);
        }
    }

    /// A request that holds requests in flight is answered.
    pub(super) fn release_request(&mut self) {
        for i in 0..self.held.in_flight.len() {
            self.release_in_flight(i);
        }
    }

    /// The connection ends: what it still holds goes back.
    pub(super) fn release_quotas(&mut self) {
        let counts = &self.config.quotas.counts;
        for (i, limit) in counts.iter().enumerate() {
            let Some(zone) = limit.zone.memory() else {
                continue;
            };
            if let Some((_, Some(slot))) = self.held.counts.get(i) {
                zone.release(*slot, Counter::Connections);
            }
            for &(slot, n) in self.held.in_flight.get(i).map_or(&[][..], Vec::as_slice) {
                for _ in 0..n {
                    zone.release(slot, Counter::InFlight);
                }
            }
        }
        self.held = Held::default();
    }

    fn limited(&mut self, reason: String, class: DenialReason) -> Result<(), Refusal> {
        self.refuse_or_note(Refusal::Limited { reason, class })
    }

    /// The guardrails of the identity's roles on one statement of a QUERY or EXECUTE:
    /// its consistency and page size; `bytes` is the request's body (a batch's size).
    pub(super) fn guard_statement(
        &mut self,
        statement: &Statement<'_>,
        params: &QueryParams<'_>,
        bytes: usize,
    ) -> Result<(), Refusal> {
        if self.guards.is_empty() || is_system(statement) {
            return Ok(());
        }
        let guards = &self.guards;
        let outcome = match statement.kind {
            Kind::Select => guards
                .check_consistency(false, params.consistency.0)
                .and_then(|()| guards.check_page_size(params.page_size)),
            Kind::Insert | Kind::Update | Kind::Delete => {
                guards.check_consistency(true, params.consistency.0)
            }
            Kind::Batch => guards
                .check_consistency(true, params.consistency.0)
                .and_then(|()| guards.check_batch(statement.children.len(), bytes)),
            _ => Ok(()),
        };
        self.guarded(outcome)
    }

    /// The size of a statement's text (QUERY, PREPARE, EXECUTE, a BATCH child).
    pub(super) fn guard_text(&mut self, bytes: usize) -> Result<(), Refusal> {
        if self.guards.is_empty() {
            return Ok(());
        }
        let outcome = self.guards.check_statement_size(bytes);
        self.guarded(outcome)
    }

    /// A BATCH message: its consistency, statements and bytes.
    pub(super) fn guard_batch(
        &mut self,
        consistency: u16,
        statements: usize,
        bytes: usize,
    ) -> Result<(), Refusal> {
        if self.guards.is_empty() {
            return Ok(());
        }
        let guards = &self.guards;
        let outcome = guards
            .check_consistency(true, consistency)
            .and_then(|()| guards.check_batch(statements, bytes));
        self.guarded(outcome)
    }

    fn guarded(&mut self, outcome: Result<(), GuardRefusal>) -> Result<(), Refusal> {
        match outcome {
            Ok(()) => Ok(()),
            Err(refusal) => self.refuse_or_note(Refusal::Guardrail(refusal)),
        }
    }

    /// A refusal of the policy, a guardrail or a limit: in dry run (`cql_dry_run on`) the
    /// request goes on and the first such refusal is noted for its audit line and metrics.
    pub(super) fn refuse_or_note(&mut self, refusal: Refusal) -> Result<(), Refusal> {
        if !self.config.dry_run {
            return Err(refusal);
        }
        if self.would_deny.is_none() {
            self.would_deny = Some(refusal);
        }
        Ok(())
    }
}

/// The slot of an acquire that could only fail on a full zone.
fn held_anyway(verdict: CountVerdict) -> Option<Slot> {
    match verdict {
        CountVerdict::Held(slot) => Some(slot),
        _ => None,
    }
}

/// A statement on Cassandra's own keyspaces (`system`, `system_schema`, `system_views`, ...),
/// which drivers read when they connect, unpaged and at their own consistency: the
/// guardrails of consistency and page size do not apply, as Cassandra's own guardrails
/// leave its system keyspaces alone.
fn is_system(statement: &Statement<'_>) -> bool {
    statement
        .keyspace
        .as_deref()
        .is_some_and(|keyspace| keyspace.starts_with("system"))
}

/// The refusal when a zone has no room for one more key.
fn full(zone: &str, what: &str) -> String {
    format!(
        "The limit zone {zone} is full (too many keys in use): the {what} is refused; \
         make the zone larger"
    )
}
