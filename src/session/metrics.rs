//! What a session counts into its server's metrics (`cql_metrics_zone`): the connection,
//! logins, decisions, Cassandra's answers and their latency, cache lookups, violations and
//! bytes. Every call does nothing for a server without a zone.

use crate::classify::Category;
use crate::codec::messages::strip_prefixes;
use crate::codec::{Direction, Header, Opcode};
use crate::identity::Source;
use crate::metrics::{
    Cache, CacheStats, Decision, DenialReason, Login, Method, Outcome, Peer, RequestCategory,
    ServerMeter, Violation,
};

use super::{Fault, Session};

impl Session {
    /// The server's counters, when they count into a zone.
    pub(super) fn meter(&self) -> Option<&ServerMeter> {
        self.meter.as_deref()
    }

    pub(super) fn meter_bytes(&self, from: Direction, n: usize) {
        if let Some(meter) = self.meter() {
            let peer = match from {
                Direction::ClientToServer => Peer::Client,
                Direction::ServerToClient => Peer::Server,
            };
            meter.bytes(peer, n as u64);
        }
    }

    /// A refused login, on the token path unless the client is a certificate's.
    pub(super) fn meter_login_refused(&self, method: Method, outcome: Login) {
        if let Some(meter) = self.meter() {
            meter.login(method, outcome, None);
        }
    }

    /// How the identity of the login in progress authenticates.
    pub(super) fn login_method(&self) -> Method {
        match self.identity.as_ref().map(|i| i.source) {
            Some(Source::Certificate) => Method::Mtls,
            _ => Method::Jwt,
        }
    }

    /// The client is logged in: the handshake took from its first byte to now.
    pub(super) fn meter_logged_in(&self) {
        if let Some(meter) = self.meter() {
            let took = self
                .first_byte_us
                .map(|start| self.clock.monotonic_us.saturating_sub(start));
            meter.login(self.login_method(), Login::Success, took);
        }
    }

    pub(super) fn meter_request(&self, category: Category, decision: Decision) {
        if let Some(meter) = self.meter() {
            meter.request(RequestCategory::from(category), decision);
        }
    }

    pub(super) fn meter_denial_reason(&self, reason: DenialReason) {
        if let Some(meter) = self.meter() {
            meter.denied(reason);
        }
    }

    /// A policy denial, by the identity's roles and the statement's keyspace.
    pub(super) fn meter_policy_denial(&self, keyspace: Option<&str>) {
        if let Some(meter) = self.meter() {
            let roles = self.roles.iter().flat_map(|roles| roles.names());
            meter.denied_by(roles, keyspace);
        }
    }

    /// Cassandra answered a request forwarded at `forwarded_us`.
    pub(super) fn meter_response(&self, header: &Header, body: Option<&[u8]>, forwarded_us: u64) {
        let Some(meter) = self.meter() else {
            return;
        };
        let outcome = match header.opcode {
            Opcode::Error => body
                .and_then(|body| strip_prefixes(header, body).ok())
                .and_then(|(_, rest)| rest.get(..4))
                .and_then(|code| <[u8; 4]>::try_from(code).ok())
                .map_or(Outcome::OtherError, |code| {
                    Outcome::of_error_code(i32::from_be_bytes(code))
                }),
            _ => Outcome::Result,
        };
        let took = self.clock.monotonic_us.saturating_sub(forwarded_us);
        meter.response(outcome, Some(took));
    }

    pub(super) fn meter_cache(&self, cache: Cache, before: CacheStats, after: CacheStats) {
        if let Some(meter) = self.meter() {
            meter.cache(cache, before, after);
        }
    }

    /// The connection ends for this violation.
    pub(super) fn meter_violation(&self, violation: &super::Violation) {
        let Some(meter) = self.meter() else {
            return;
        };
        let kind = match &violation.fault {
            _ if violation.is_version_probe() => Violation::VersionProbe,
            Fault::Codec(_) => Violation::Codec,
            Fault::Unexpected { .. } => Violation::Unexpected,
            Fault::AuthResponseTooLarge { .. } => Violation::AuthResponseTooLarge,
            Fault::Upstream(_) => Violation::Upstream,
            Fault::Identity(_) => Violation::Identity,
            Fault::StreamInFlight { .. } => Violation::StreamInFlight,
            Fault::NegativeStream { .. } => Violation::NegativeStream,
            Fault::TooManyLogins { .. } => Violation::TooManyLogins,
            Fault::AuthTimeout { .. } => Violation::AuthTimeout,
            Fault::Unbound => Violation::Unbound,
            Fault::ConnectionLimit => Violation::ConnectionLimit,
        };
        meter.violation(kind);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.release_quotas();
        if let Some(meter) = self.meter() {
            meter.connection_closed();
        }
    }
}
