//! The full rendering of a record, field by field from plain values, as lines were written
//! before the renderer kept what does not change: the reference the rendered-once lines are
//! compared with, byte for byte.

use core::fmt::Write;

use super::format::string;
use super::{hex, Child, Event, Format, Outcome, Peer, Record, Renderer, Settings, Summary, Who};
use crate::classify::Category;

/// A record with every field as a plain value.
#[derive(Clone, Debug)]
pub struct Plain {
    pub time_ms: u64,
    pub event: Event,
    pub category: Category,
    pub operation: &'static str,
    pub keyspace: Option<String>,
    pub table: Option<String>,
    /// The statement's text as sent (masked when rendered).
    pub statement: Option<String>,
    pub prepared_id: Option<Vec<u8>>,
    pub batch: Vec<PlainChild>,
    pub stream: Option<i16>,
    pub allowed: Option<bool>,
    pub would_deny: bool,
    pub reason: Option<String>,
    pub rule: Option<String>,
    pub outcome: Option<Outcome>,
    pub latency_us: Option<u64>,
    pub summary: Option<Summary>,
}

/// A statement of a BATCH, as plain values.
#[derive(Clone, Debug, Default)]
pub struct PlainChild {
    pub operation: &'static str,
    pub keyspace: Option<String>,
    pub table: Option<String>,
    pub statement: Option<String>,
    pub prepared_id: Option<Vec<u8>>,
}

impl Plain {
    pub fn new(time_ms: u64, event: Event, category: Category, operation: &'static str) -> Self {
        Plain {
            time_ms,
            event,
            category,
            operation,
            keyspace: None,
            table: None,
            statement: None,
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

    /// The same record for `renderer`: its subject rendered (the prepared id with it, or
    /// after it as a PREPARE's answer gives it when `late_id`).
    pub fn record(&self, renderer: &mut Renderer, late_id: bool) -> Record {
        let subject_id = if late_id {
            None
        } else {
            self.prepared_id.as_deref()
        };
        let any = self.keyspace.is_some()
            || self.table.is_some()
            || self.statement.is_some()
            || subject_id.is_some();
        Record {
            time_ms: self.time_ms,
            event: self.event,
            category: self.category,
            operation: self.operation,
            subject: any.then(|| {
                renderer.subject(
                    self.keyspace.as_deref(),
                    self.table.as_deref(),
                    self.statement.as_deref(),
                    subject_id,
                )
            }),
            prepared_id: if late_id {
                self.prepared_id.clone()
            } else {
                None
            },
            batch: self
                .batch
                .iter()
                .map(|c| Child {
                    operation: c.operation,
                    subject: renderer.subject(
                        c.keyspace.as_deref(),
                        c.table.as_deref(),
                        c.statement.as_deref(),
                        c.prepared_id.as_deref(),
                    ),
                })
                .collect(),
            stream: self.stream,
            allowed: self.allowed,
            would_deny: self.would_deny,
            reason: self.reason.clone(),
            rule: self.rule.as_deref().map(Into::into),
            outcome: self.outcome,
            latency_us: self.latency_us,
            summary: self.summary,
        }
    }

    /// The record as it is written: statement texts masked as `settings` say.
    fn masked(&self, settings: &Settings) -> Plain {
        let mask = |t: &Option<String>| {
            t.as_deref()
                .map(|t| super::redact(t, settings.redact_literals).into_owned())
        };
        let mut r = self.clone();
        r.statement = mask(&self.statement);
        for (c, original) in r.batch.iter_mut().zip(&self.batch) {
            c.statement = mask(&original.statement);
        }
        r
    }
}

/// Appends `record` as one line (ending in `\n`), every field rendered from its value.
pub fn write_line(settings: &Settings, peer: &Peer, who: &Who, record: &Plain, out: &mut Vec<u8>) {
    let record = record.masked(settings);
    match settings.format {
        Format::Json => {
            json(peer, who, &record, out);
            out.push(b'\n');
        }
        Format::Cassandra => cassandra(peer, who, &record, out),
    }
}

fn error_code(code: i32) -> String {
    format!("0x{code:04x}")
}

/// A JSON object written straight into the line.
struct Json<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Json<'a> {
    fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Json { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        string(self.out, value);
    }

    fn opt_str(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.str(key, value);
        }
    }

    fn num(&mut self, key: &str, value: impl core::fmt::Display) {
        self.key(key);
        self.out.extend_from_slice(value.to_string().as_bytes());
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

fn json(peer: &Peer, who: &Who, r: &Plain, out: &mut Vec<u8>) {
    let mut time = String::with_capacity(24);
    super::iso8601_ms(r.time_ms, &mut time);
    let mut m = Json::open(out);
    m.str("time", &time);
    m.str("event", r.event.as_str());
    m.num("session", peer.session);
    m.str("client", &peer.client);
    m.str("server", &peer.server);
    m.key("principal");
    match &who.principal {
        Some(p) => string(m.out, p),
        None => m.out.extend_from_slice(b"null"),
    }
    m.key("roles");
    m.out.push(b'[');
    for (i, role) in who.roles.iter().enumerate() {
        if i > 0 {
            m.out.push(b',');
        }
        string(m.out, role);
    }
    m.out.push(b']');
    if !who.auth.is_empty() {
        m.str("auth", who.auth);
    }
    m.str("category", r.category.as_str());
    m.str("type", r.operation);
    if let Some(stream) = r.stream {
        m.num("stream", stream);
    }
    m.opt_str("keyspace", r.keyspace.as_deref());
    m.opt_str("table", r.table.as_deref());
    m.opt_str("statement", r.statement.as_deref());
    if let Some(id) = &r.prepared_id {
        m.str("prepared_id", &hex(id));
    }
    if !r.batch.is_empty() {
        m.key("batch");
        m.out.push(b'[');
        for (i, c) in r.batch.iter().enumerate() {
            if i > 0 {
                m.out.push(b',');
            }
            let mut child = Json::open(m.out);
            child.str("type", c.operation);
            child.opt_str("keyspace", c.keyspace.as_deref());
            child.opt_str("table", c.table.as_deref());
            child.opt_str("statement", c.statement.as_deref());
            if let Some(id) = &c.prepared_id {
                child.str("prepared_id", &hex(id));
            }
            child.close();
        }
        m.out.push(b']');
    }
    if let Some(allowed) = r.allowed {
        let decision = match (allowed, r.would_deny) {
            (true, false) => "allow",
            (true, true) => "would_deny",
            (false, _) => "deny",
        };
        m.str("decision", decision);
    }
    m.opt_str("reason", r.reason.as_deref());
    m.opt_str("rule", r.rule.as_deref());
    match r.outcome {
        Some(Outcome::Success) => m.str("outcome", "success"),
        Some(Outcome::Error(code)) => {
            m.str("outcome", "error");
            m.str("error_code", &error_code(code));
        }
        Some(Outcome::NoResponse) => m.str("outcome", "no_response"),
        None => {}
    }
    if let Some(latency) = r.latency_us {
        m.num("latency_us", latency);
    }
    if let Some(summary) = &r.summary {
        m.num("requests", summary.requests);
        m.num("denied", summary.denied);
        m.num("duration_ms", summary.duration_ms);
        m.num("client_frames", summary.client_frames);
        m.num("server_frames", summary.server_frames);
    }
    m.close();
}

/// Cassandra's `AuditLogEntry.getLogString()`.
fn cassandra(peer: &Peer, who: &Who, r: &Plain, out: &mut Vec<u8>) {
    let (source, port) = match peer.client.rsplit_once(':') {
        Some((host, port)) => (host.trim_start_matches('[').trim_end_matches(']'), port),
        None => (peer.client.as_str(), "0"),
    };
    let user = who.principal.as_deref().unwrap_or("null");
    let (operation, category) = match (r.allowed, r.outcome) {
        (Some(false), _) if r.event == Event::Request => ("UNAUTHORIZED_ATTEMPT", "AUTH"),
        (_, Some(Outcome::Error(_))) => ("REQUEST_FAILURE", "ERROR"),
        _ => (r.operation, r.category.as_str()),
    };
    let prefix = match (&r.reason, r.outcome) {
        (Some(reason), _) => Some(reason.clone()),
        (None, Some(Outcome::Error(code))) => Some(format!("Error {}", error_code(code))),
        _ => None,
    };
    let mut line = |operation: &str,
                    keyspace: Option<&str>,
                    scope: Option<&str>,
                    text: Option<&str>,
                    batch: Option<&str>| {
        let mut s = String::with_capacity(160);
        let _ = write!(
            s,
            "user:{user}|host:{}|source:/{source}|port:{port}|timestamp:{}|type:{operation}|category:{category}",
            peer.server, r.time_ms
        );
        if let Some(batch) = batch {
            let _ = write!(s, "|batch:{batch}");
        }
        if let Some(ks) = keyspace.filter(|k| !k.is_empty()) {
            let _ = write!(s, "|ks:{ks}");
        }
        if let Some(scope) = scope.filter(|k| !k.is_empty()) {
            let _ = write!(s, "|scope:{scope}");
        }
        let text = match (&prefix, text) {
            (Some(p), Some(t)) => Some(format!("{p}; {t}")),
            (Some(p), None) => Some(p.clone()),
            (None, t) => t.map(str::to_string),
        };
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            let _ = write!(s, "|operation:{text}");
        }
        if let Some(summary) = &r.summary {
            let _ = write!(
                s,
                "|requests:{}|denied:{}|duration_ms:{}",
                summary.requests, summary.denied, summary.duration_ms
            );
        }
        out.extend(
            s.bytes()
                .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
        out.push(b'\n');
    };
    if r.batch.is_empty() {
        line(
            operation,
            r.keyspace.as_deref(),
            r.table.as_deref(),
            r.statement.as_deref(),
            None,
        );
        return;
    }
    let batch_id = format!("{}-{}", peer.session, r.stream.unwrap_or(0));
    for child in &r.batch {
        let child_operation = match operation {
            "UNAUTHORIZED_ATTEMPT" | "REQUEST_FAILURE" => operation,
            _ => child.operation,
        };
        line(
            child_operation,
            child.keyspace.as_deref(),
            child.table.as_deref(),
            child.statement.as_deref(),
            Some(&batch_id),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers() -> Vec<Peer> {
        vec![
            Peer {
                session: 7,
                client: "127.0.0.1:53422".into(),
                server: "127.0.0.1:9042".into(),
            },
            Peer {
                session: u64::MAX,
                client: "[2001:db8::1]:9\n".into(),
                server: "line\r\nbreak \"q\"".into(),
            },
            Peer {
                session: 0,
                client: "no-port".into(),
                server: String::new(),
            },
        ]
    }

    fn whos() -> Vec<Who> {
        vec![
            Who::default(),
            Who {
                principal: Some("alice".into()),
                roles: vec!["dba".into()],
                auth: "jwt",
            },
            Who {
                principal: Some("CN=\"Zoë\"\\\n\u{1}\u{7f}".into()),
                roles: vec!["a\tb".into(), "ünï".into(), String::new()],
                auth: "mtls",
            },
            Who {
                principal: None,
                roles: vec![],
                auth: "jwt",
            },
        ]
    }

    const TEXTS: [&str; 6] = [
        "SELECT * FROM shop.orders WHERE id = 42 AND name = 'ann'",
        "INSERT INTO t (k, v) VALUES (?, 'a \"q\" \\ \u{1}\t\u{7f}é\r\n')",
        "CREATE ROLE bob WITH PASSWORD = 'hunter2'",
        "SELECT 'unterminated",
        "",
        "SELECT \u{1f600} FROM \"Ks\".\"Tbl\"\nWHERE k = 0xff",
    ];

    fn request(stream: i16, operation: &'static str, text: &str) -> Plain {
        let mut r = Plain::new(
            1_795_253_400_123,
            Event::Request,
            Category::Query,
            operation,
        );
        r.stream = Some(stream);
        r.keyspace = Some("shop".into());
        r.table = Some("orders".into());
        r.statement = Some(text.into());
        r
    }

    /// Records of every kind the session writes, and some it does not.
    fn records() -> Vec<Plain> {
        let mut all = Vec::new();
        for (i, text) in TEXTS.iter().enumerate() {
            // QUERY allowed, answered.
            let mut r = request(i as i16, "SELECT", text);
            r.allowed = Some(true);
            r.rule = Some("role dba: superuser; role \"x\": grant\n".into());
            r.outcome = Some(Outcome::Success);
            r.latency_us = Some(412);
            all.push(r.clone());
            // Upstream error, negative stream, no response.
            r.stream = Some(-3);
            r.outcome = Some(Outcome::Error(0x2200));
            all.push(r.clone());
            r.outcome = Some(Outcome::Error(-1));
            all.push(r.clone());
            r.outcome = Some(Outcome::NoResponse);
            r.latency_us = None;
            all.push(r.clone());
            // Denied with a rule, and with an empty reason.
            let mut d = request(9, "UPDATE", text);
            d.category = Category::Dml;
            d.allowed = Some(false);
            d.reason = Some("User alice has no MODIFY permission on <table shop.orders>\n".into());
            d.rule = Some("role r: deny MODIFY on TABLE shop.orders (line 3)".into());
            all.push(d.clone());
            d.reason = Some(String::new());
            d.statement = None;
            all.push(d.clone());
            // EXECUTE of a known id.
            let mut e = request(i16::MAX, "SELECT", text);
            e.prepared_id = Some(vec![0xab, 0x01, 0x00, 0xff]);
            e.allowed = Some(true);
            e.outcome = Some(Outcome::Success);
            e.latency_us = Some(0);
            all.push(e);
            // PREPARE, answered with its id.
            let mut p = request(i16::MIN, "PREPARE_STATEMENT", text);
            p.category = Category::Prepare;
            p.prepared_id = Some(vec![1, 2, 3]);
            p.allowed = Some(true);
            p.outcome = Some(Outcome::Success);
            all.push(p);
        }
        // EXECUTE of an unknown id, answered by the proxy.
        let mut u = Plain::new(5, Event::Request, Category::Error, "REQUEST_FAILURE");
        u.stream = Some(4);
        u.prepared_id = Some(vec![0xff, 0xee]);
        u.reason = Some("Prepared query with ID 0xffee not found".into());
        u.outcome = Some(Outcome::Error(0x2500));
        all.push(u);
        // An empty keyspace and table, and a keyspace only.
        let mut k = request(1, "SELECT", "SELECT 1");
        k.keyspace = Some(String::new());
        k.table = Some(String::new());
        all.push(k.clone());
        k.table = None;
        k.statement = None;
        k.keyspace = Some("ks\nx".into());
        all.push(k);
        // BATCHes: allowed, denied, with an unknown id, upstream error.
        let children = vec![
            PlainChild {
                operation: "UPDATE",
                keyspace: Some("shop".into()),
                table: Some("a".into()),
                statement: Some(TEXTS[1].into()),
                prepared_id: None,
            },
            PlainChild {
                operation: "SELECT",
                keyspace: Some("shop".into()),
                table: Some("orders".into()),
                statement: Some(TEXTS[0].into()),
                prepared_id: Some(vec![0x0a]),
            },
            PlainChild {
                operation: "REQUEST_FAILURE",
                prepared_id: Some(vec![0x09]),
                ..PlainChild::default()
            },
        ];
        let mut b = Plain::new(9, Event::Request, Category::Dml, "BATCH");
        b.stream = Some(40);
        b.keyspace = Some("shop".into());
        b.batch = children;
        b.allowed = Some(true);
        b.rule = Some("role w: grant MODIFY on TABLE shop.*".into());
        b.outcome = Some(Outcome::Success);
        b.latency_us = Some(77);
        all.push(b.clone());
        b.outcome = Some(Outcome::Error(0x1100));
        all.push(b.clone());
        b.allowed = Some(false);
        b.outcome = None;
        b.reason = Some("User w has no MODIFY permission".into());
        all.push(b.clone());
        b.stream = None;
        b.keyspace = None;
        b.allowed = None;
        b.batch.truncate(1);
        all.push(b);
        // Logins, violations, the summary.
        let mut l = Plain::new(1, Event::Login, Category::Auth, "LOGIN_SUCCESS");
        l.allowed = Some(true);
        all.push(l.clone());
        l.operation = "LOGIN_ERROR";
        l.allowed = Some(false);
        l.reason = Some("token signed with unknown key id \"k9\"".into());
        all.push(l);
        let mut v = Plain::new(2, Event::Violation, Category::Error, "REQUEST_FAILURE");
        v.reason = Some("client sent QUERY before authentication\r\n".into());
        all.push(v);
        let mut s = Plain::new(
            4_102_444_799_999,
            Event::Session,
            Category::Other,
            "SESSION_END",
        );
        s.summary = Some(Summary {
            requests: 15,
            denied: 5,
            duration_ms: 161,
            client_frames: 17,
            server_frames: u64::MAX,
        });
        all.push(s);
        all
    }

    #[test]
    fn rendered_once_lines_are_the_full_rendering_byte_for_byte() {
        let mut compared = 0;
        for format in [Format::Json, Format::Cassandra] {
            for redact_literals in [false, true] {
                let settings = Settings {
                    format,
                    redact_literals,
                    ..Settings::default()
                };
                for peer in peers() {
                    // One renderer through every identity, as a session logs in again.
                    let mut renderer = Renderer::new(&settings, &peer, &Who::default());
                    for who in whos() {
                        renderer.identify(&peer, &who);
                        for plain in records() {
                            let mut expected = Vec::new();
                            write_line(&settings, &peer, &who, &plain, &mut expected);
                            for late_id in [false, true] {
                                let record = plain.record(&mut renderer, late_id);
                                let mut line = Vec::new();
                                renderer.write(&record, &mut line);
                                assert_eq!(
                                    String::from_utf8_lossy(&line),
                                    String::from_utf8_lossy(&expected),
                                    "{format:?}, redact {redact_literals}, {plain:?}"
                                );
                                assert_eq!(line, expected);
                                compared += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(compared > 1000, "{compared}");
    }

    #[test]
    fn json_lines_parse_and_keep_the_text() {
        let settings = Settings::default();
        let peer = &peers()[1];
        let who = &whos()[2];
        let mut renderer = Renderer::new(&settings, peer, who);
        for plain in records() {
            let mut line = Vec::new();
            let record = plain.record(&mut renderer, false);
            renderer.write(&record, &mut line);
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(v["principal"].as_str(), who.principal.as_deref());
            if let Some(text) = &plain.statement {
                assert_eq!(
                    v["statement"].as_str(),
                    Some(&*super::super::redact(text, false))
                );
            }
        }
    }
}
