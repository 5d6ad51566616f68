//! The Prometheus text exposition (format 0.0.4) of a zone.
//!
//! Every fixed label combination is rendered from the start, zero or not, so that `rate()`
//! sees a series before its first event; role and keyspace pairs appear once denied.

use core::fmt::Write;

use super::labels::{
    Cache, CacheEvent, Decision, DenialReason, LabelSet, Login, Method, Outcome, Peer,
    RequestCategory, Violation, HISTOGRAM_WORDS, LATENCY_BOUNDS_US,
};
use super::zone::{global, server, Zone};

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every counter of `zone`.
pub fn render(zone: &Zone, out: &mut String) {
    let servers = zone.servers();
    let r = Renderer {
        zone,
        servers: &servers,
        out,
    };
    r.render();
}

struct Renderer<'a> {
    zone: &'a Zone,
    servers: &'a [(usize, String)],
    out: &'a mut String,
}

impl Renderer<'_> {
    fn render(mut self) {
        self.family(
            "cql_connections_open",
            "gauge",
            "Client connections open now.",
        );
        for (slot, name) in self.servers {
            let opened = self.zone.sum(*slot, server::CONNECTIONS_OPENED);
            let closed = self.zone.sum(*slot, server::CONNECTIONS_CLOSED);
            self.sample(
                "cql_connections_open",
                name,
                &[],
                opened.saturating_sub(closed),
            );
        }
        self.family(
            "cql_connections_total",
            "counter",
            "Client connections accepted.",
        );
        for (slot, name) in self.servers {
            let opened = self.zone.sum(*slot, server::CONNECTIONS_OPENED);
            self.sample("cql_connections_total", name, &[], opened);
        }
        self.family(
            "cql_logins_total",
            "counter",
            "Logins by method and outcome: success, or the class of the refusal.",
        );
        self.matrix::<Method, Login>("cql_logins_total", server::LOGINS);
        self.histograms::<Method>(
            "cql_handshake_duration_seconds",
            "Time from a client's first byte to its successful login.",
            server::HANDSHAKE_LATENCY,
        );
        self.family(
            "cql_requests_total",
            "counter",
            "Requests (QUERY, PREPARE, EXECUTE, BATCH) by audit category and decision.",
        );
        self.matrix::<RequestCategory, Decision>("cql_requests_total", server::REQUESTS);
        self.family(
            "cql_denied_requests_total",
            "counter",
            "Denied requests by reason.",
        );
        self.vector::<DenialReason>("cql_denied_requests_total", server::DENIAL_REASONS);
        self.family(
            "cql_would_deny_requests_total",
            "counter",
            "Requests a server in dry run forwarded that the gate would have refused, by reason.",
        );
        self.vector::<DenialReason>("cql_would_deny_requests_total", server::WOULD_DENY_REASONS);
        self.denials();
        self.family(
            "cql_unprepared_answers_total",
            "counter",
            "EXECUTEs of ids the proxy does not know, answered Unprepared by the proxy.",
        );
        for (slot, name) in self.servers {
            let n = self.zone.sum(*slot, server::UNPREPARED);
            self.sample("cql_unprepared_answers_total", name, &[], n);
        }
        self.family(
            "cql_upstream_responses_total",
            "counter",
            "Cassandra's answers to forwarded requests: result, or the error by name.",
        );
        self.vector::<Outcome>("cql_upstream_responses_total", server::RESPONSES);
        self.histograms::<()>(
            "cql_upstream_response_duration_seconds",
            "Time from forwarding an allowed request to Cassandra's answer.",
            server::RESPONSE_LATENCY,
        );
        for (family, event, help) in [
            (
                "cql_cache_hits_total",
                CacheEvent::Hit,
                "Cache lookups that found an entry.",
            ),
            (
                "cql_cache_misses_total",
                CacheEvent::Miss,
                "Cache lookups that found none.",
            ),
            (
                "cql_cache_evictions_total",
                CacheEvent::Eviction,
                "Entries evicted to make room.",
            ),
        ] {
            self.family(family, "counter", help);
            for (slot, name) in self.servers {
                for cache in Cache::ALL {
                    let offset = server::CACHES + cache.index() * CacheEvent::COUNT + event.index();
                    let n = self.zone.sum(*slot, offset);
                    self.sample(family, name, &[(Cache::LABEL, cache.name())], n);
                }
            }
        }
        self.family(
            "cql_protocol_violations_total",
            "counter",
            "Connections ended for a protocol violation, by kind.",
        );
        self.vector::<Violation>("cql_protocol_violations_total", server::VIOLATIONS);
        self.family(
            "cql_received_bytes_total",
            "counter",
            "Bytes received from clients and from Cassandra.",
        );
        self.vector::<Peer>("cql_received_bytes_total", server::BYTES);
        for (family, offset, help) in [
            (
                "cql_audit_lines_total",
                global::AUDIT_LINES,
                "Audit lines handed to the audit logs.",
            ),
            (
                "cql_audit_lines_lost_total",
                global::AUDIT_LINES_LOST,
                "Audit lines a log could not write.",
            ),
        ] {
            self.family(family, "counter", help);
            let n = self.zone.sum_global(offset);
            let _ = writeln!(self.out, "{family} {n}");
        }
    }

    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, server: &str, labels: &[(&str, &str)], value: u64) {
        self.out.push_str(name);
        self.labels(server, labels);
        let _ = writeln!(self.out, " {value}");
    }

    fn labels(&mut self, server: &str, labels: &[(&str, &str)]) {
        self.out.push_str("{server=\"");
        escape(server, self.out);
        self.out.push('"');
        for (label, value) in labels {
            let _ = write!(self.out, ",{label}=\"");
            escape(value, self.out);
            self.out.push('"');
        }
        self.out.push('}');
    }

    fn vector<A: LabelSet>(&mut self, family: &str, base: usize) {
        for (slot, name) in self.servers {
            for a in A::ALL {
                let n = self.zone.sum(*slot, base + a.index());
                self.sample(family, name, &[(A::LABEL, a.name())], n);
            }
        }
    }

    fn matrix<A: LabelSet, B: LabelSet>(&mut self, family: &str, base: usize) {
        for (slot, name) in self.servers {
            for a in A::ALL {
                for b in B::ALL {
                    let n = self
                        .zone
                        .sum(*slot, base + a.index() * B::COUNT + b.index());
                    self.sample(
                        family,
                        name,
                        &[(A::LABEL, a.name()), (B::LABEL, b.name())],
                        n,
                    );
                }
            }
        }
    }

    /// One histogram per member of `A` (`()`: one per server).
    fn histograms<A: Histogrammed>(&mut self, family: &str, help: &str, base: usize) {
        self.family(family, "histogram", help);
        for (slot, name) in self.servers {
            for (i, label) in A::labels().iter().enumerate() {
                let at = base + i * HISTOGRAM_WORDS;
                let labels: Vec<(&str, &str)> = label.iter().copied().collect();
                let mut cumulative = 0u64;
                for (bucket, bound) in LATENCY_BOUNDS_US.iter().enumerate() {
                    cumulative += self.zone.sum(*slot, at + bucket);
                    let le = format!("{}", *bound as f64 / 1e6);
                    self.bucket(family, name, &labels, &le, cumulative);
                }
                cumulative += self.zone.sum(*slot, at + LATENCY_BOUNDS_US.len());
                self.bucket(family, name, &labels, "+Inf", cumulative);
                let sum_us = self.zone.sum(*slot, at + HISTOGRAM_WORDS - 1);
                let _ = write!(self.out, "{family}_sum");
                self.labels(name, &labels);
                let _ = writeln!(self.out, " {}", sum_us as f64 / 1e6);
                let _ = write!(self.out, "{family}_count");
                self.labels(name, &labels);
                let _ = writeln!(self.out, " {cumulative}");
            }
        }
    }

    fn bucket(&mut self, family: &str, server: &str, labels: &[(&str, &str)], le: &str, n: u64) {
        let _ = write!(self.out, "{family}_bucket");
        let mut all = labels.to_vec();
        all.push(("le", le));
        self.labels(server, &all);
        let _ = writeln!(self.out, " {n}");
    }

    /// Denials by role and keyspace: the pairs denied at least once.
    fn denials(&mut self) {
        let family = "cql_denials_total";
        self.family(
            family,
            "counter",
            "Policy denials by role of the identity (each role counted) and keyspace.",
        );
        let layout = self.zone.layout();
        let named = |mut names: Vec<(usize, String)>, other: usize| {
            names.push((other, "other".to_string()));
            names
        };
        let roles = named(self.zone.roles(), layout.roles);
        let keyspaces = named(self.zone.keyspaces(), layout.keyspaces);
        for (slot, name) in self.servers {
            for (r, role) in &roles {
                for (k, keyspace) in &keyspaces {
                    let n = self.zone.denials(*slot, *r, *k);
                    if n > 0 {
                        self.sample(family, name, &[("role", role), ("keyspace", keyspace)], n);
                    }
                }
            }
        }
    }
}

/// What a family of histograms is labelled by.
trait Histogrammed {
    fn labels() -> Vec<Option<(&'static str, &'static str)>>;
}

impl Histogrammed for () {
    fn labels() -> Vec<Option<(&'static str, &'static str)>> {
        vec![None]
    }
}

impl Histogrammed for Method {
    fn labels() -> Vec<Option<(&'static str, &'static str)>> {
        Method::ALL
            .iter()
            .map(|m| Some((Method::LABEL, m.name())))
            .collect()
    }
}

/// A label value as the text format escapes it: backslash, double quote and line feed.
fn escape(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::zone::leaked;
    use super::super::{Login, Method, ServerMeter};
    use super::*;

    fn zone() -> (Zone, ServerMeter) {
        let zone = Zone::attach(leaked(100_000), 4, 4).expect("zone");
        let slot = zone.server_slot("127.0.0.1:9042").expect("slot");
        let meter = ServerMeter::default();
        meter.bind(zone, slot);
        (zone, meter)
    }

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix} in\n{text}"))
    }

    #[test]
    fn counts_are_rendered_with_their_labels() {
        let (zone, meter) = zone();
        meter.connection_opened();
        meter.connection_opened();
        meter.connection_closed();
        meter.login(Method::Jwt, Login::Success, Some(1_200));
        meter.login(Method::Jwt, Login::Expired, None);
        meter.request(RequestCategory::Query, Decision::Allowed);
        meter.denied(DenialReason::Policy);
        meter.denied_by(["reader", "a\"b"].into_iter(), Some("shop"));
        meter.response(Outcome::Result, Some(70));
        meter.response(Outcome::ReadTimeout, Some(3_000_000));
        let mut text = String::new();
        render(&zone, &mut text);
        let server = "server=\"127.0.0.1:9042\"";
        assert_eq!(
            line(&text, &format!("cql_connections_open{{{server}}}")),
            format!("cql_connections_open{{{server}}} 1")
        );
        assert!(text.contains(&format!("cql_connections_total{{{server}}} 2\n")));
        assert!(text.contains(&format!(
            "cql_logins_total{{{server},method=\"jwt\",outcome=\"expired\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "cql_handshake_duration_seconds_bucket{{{server},method=\"jwt\",le=\"0.0025\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "cql_handshake_duration_seconds_bucket{{{server},method=\"jwt\",le=\"0.001\"}} 0\n"
        )));
        assert!(text.contains(&format!(
            "cql_handshake_duration_seconds_sum{{{server},method=\"jwt\"}} 0.0012\n"
        )));
        assert!(text.contains(&format!(
            "cql_denials_total{{{server},role=\"a\\\"b\",keyspace=\"shop\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "cql_upstream_response_duration_seconds_bucket{{{server},le=\"0.0001\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "cql_upstream_response_duration_seconds_bucket{{{server},le=\"+Inf\"}} 2\n"
        )));
        assert!(text.contains(&format!(
            "cql_upstream_response_duration_seconds_count{{{server}}} 2\n"
        )));
        assert!(text.contains(&format!(
            "cql_upstream_responses_total{{{server},outcome=\"read_timeout\"}} 1\n"
        )));
        assert!(text.contains("cql_audit_lines_lost_total 0\n"));
    }

    #[test]
    fn every_family_has_help_and_type_once() {
        let (zone, _) = zone();
        let mut text = String::new();
        render(&zone, &mut text);
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let helps = text.lines().filter(|l| l.starts_with("# HELP")).count();
        assert_eq!(types.len(), helps);
        for t in &types {
            assert_eq!(types.iter().filter(|o| *o == t).count(), 1, "{t}");
        }
    }
}
