//! Formatting one record as one line.

use core::fmt::Write;

use super::{Event, Format, Outcome, Peer, Record, Who};

/// Appends `record` as one line (ending in `\n`) in `format`.
pub fn write_line(format: Format, peer: &Peer, who: &Who, record: &Record, out: &mut Vec<u8>) {
    match format {
        Format::Json => {
            json(peer, who, record, out);
            out.push(b'\n');
        }
        Format::Cassandra => cassandra(peer, who, record, out),
    }
}

/// Bytes as `0x` and lower-case hex digits (prepared ids).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 + bytes.len() * 2);
    s.push_str("0x");
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn error_code(code: i32) -> String {
    format!("0x{code:04x}")
}

/// A JSON object written straight into the line: keys are fixed ASCII, values escaped
/// with a fast path for text that needs none (the usual case), which is several times
/// cheaper than a generic serializer on the request path (see `benches/audit.rs`).
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

    fn num(&mut self, key: &str, value: impl itoa_like::Number) {
        self.key(key);
        value.write(self.out);
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// Writes `s` as a JSON string.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f | 0x7f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            let _ = write!(Hex(out), "\\u{b:04x}");
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `fmt::Write` into bytes.
struct Hex<'a>(&'a mut Vec<u8>);

impl Write for Hex<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

mod itoa_like {
    /// Integers written in decimal, digit by digit.
    pub trait Number {
        fn write(self, out: &mut Vec<u8>);
    }

    pub fn decimal(mut n: u64, out: &mut Vec<u8>) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        out.extend_from_slice(&digits[i..]);
    }

    impl Number for u64 {
        fn write(self, out: &mut Vec<u8>) {
            decimal(self, out);
        }
    }

    impl Number for i16 {
        fn write(self, out: &mut Vec<u8>) {
            if self < 0 {
                out.push(b'-');
            }
            decimal(u64::from(self.unsigned_abs()), out);
        }
    }
}

fn json(peer: &Peer, who: &Who, r: &Record, out: &mut Vec<u8>) {
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
        m.str("decision", if allowed { "allow" } else { "deny" });
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

/// Cassandra's `AuditLogEntry.getLogString()`: a denial is an `UNAUTHORIZED_ATTEMPT`, an
/// upstream error a `REQUEST_FAILURE`, each with the reason before the statement, and a
/// batch one line per statement sharing a batch id. Line breaks in text become spaces.
fn cassandra(peer: &Peer, who: &Who, r: &Record, out: &mut Vec<u8>) {
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
    use super::super::*;
    use crate::classify::Category;

    fn peer() -> Peer {
        Peer {
            session: 7,
            client: "127.0.0.1:53422".into(),
            server: "127.0.0.1:9042".into(),
        }
    }

    fn who() -> Who {
        Who {
            principal: Some("alice".into()),
            roles: vec!["dba".into()],
            auth: "jwt",
        }
    }

    fn line(format: Format, r: &Record) -> String {
        let mut out = Vec::new();
        write_line(format, &peer(), &who(), r, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn select() -> Record {
        let mut r = Record::new(1_795_253_400_123, Event::Request, Category::Query, "SELECT");
        r.keyspace = Some("shop".into());
        r.table = Some("orders".into());
        r.statement = Some("SELECT * FROM orders\nWHERE id = ?".into());
        r.stream = Some(5);
        r.allowed = Some(true);
        r.rule = Some("role dba: superuser".into());
        r.outcome = Some(Outcome::Success);
        r.latency_us = Some(412);
        r
    }

    #[test]
    fn json_line_of_an_allowed_request() {
        let l = line(Format::Json, &select());
        assert!(l.ends_with("}\n") && l.matches('\n').count() == 1);
        assert_eq!(
            l.trim_end(),
            r#"{"time":"2026-11-21T09:30:00.123Z","event":"request","session":7,"client":"127.0.0.1:53422","server":"127.0.0.1:9042","principal":"alice","roles":["dba"],"auth":"jwt","category":"QUERY","type":"SELECT","stream":5,"keyspace":"shop","table":"orders","statement":"SELECT * FROM orders\nWHERE id = ?","decision":"allow","rule":"role dba: superuser","outcome":"success","latency_us":412}"#
        );
    }

    #[test]
    fn json_line_of_an_upstream_error_and_a_batch() {
        let mut r = select();
        r.outcome = Some(Outcome::Error(0x2200));
        r.batch = vec![Child {
            operation: "UPDATE",
            keyspace: Some("shop".into()),
            table: Some("t".into()),
            statement: None,
            prepared_id: Some(vec![0xab, 0x01]),
        }];
        let l = line(Format::Json, &r);
        assert!(
            l.contains(r#""outcome":"error","error_code":"0x2200""#),
            "{l}"
        );
        assert!(
            l.contains(r#""batch":[{"type":"UPDATE","keyspace":"shop","table":"t","prepared_id":"0xab01"}]"#),
            "{l}"
        );
    }

    #[test]
    fn json_strings_are_escaped_and_lines_parse() {
        let mut r = select();
        r.statement = Some("q \"x\" \\ \u{1} \t é".into());
        let l = line(Format::Json, &r);
        assert!(l.contains(r#""statement":"q \"x\" \\ \u0001 \t é""#), "{l}");
        let v: serde_json::Value = serde_json::from_str(l.trim_end()).unwrap();
        assert_eq!(v["statement"], "q \"x\" \\ \u{1} \t é");
        let mut out = Vec::new();
        write_line(Format::Json, &peer(), &Who::default(), &r, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v["principal"].is_null() && v["roles"] == serde_json::json!([]));
    }

    #[test]
    fn cassandra_lines() {
        assert_eq!(
            line(Format::Cassandra, &select()),
            "user:alice|host:127.0.0.1:9042|source:/127.0.0.1|port:53422|timestamp:1795253400123|type:SELECT|category:QUERY|ks:shop|scope:orders|operation:SELECT * FROM orders WHERE id = ?\n"
        );
        let mut denied = select();
        denied.allowed = Some(false);
        denied.reason = Some("User alice has no SELECT permission".into());
        denied.outcome = None;
        assert!(line(Format::Cassandra, &denied).contains(
            "|type:UNAUTHORIZED_ATTEMPT|category:AUTH|ks:shop|scope:orders|operation:User alice has no SELECT permission; SELECT"
        ));
        let mut login = Record::new(1, Event::Login, Category::Auth, "LOGIN_ERROR");
        login.allowed = Some(false);
        login.reason = Some("token expired".into());
        let mut out = Vec::new();
        write_line(
            Format::Cassandra,
            &peer(),
            &Who::default(),
            &login,
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "user:null|host:127.0.0.1:9042|source:/127.0.0.1|port:53422|timestamp:1|type:LOGIN_ERROR|category:AUTH|operation:token expired\n"
        );
    }

    #[test]
    fn cassandra_batch_is_a_line_per_statement() {
        let mut r = select();
        r.operation = "BATCH";
        r.category = Category::Dml;
        r.batch = vec![
            Child {
                operation: "UPDATE",
                keyspace: Some("shop".into()),
                table: Some("a".into()),
                statement: Some("INSERT INTO a (k) VALUES (1)".into()),
                prepared_id: None,
            },
            Child {
                operation: "DELETE",
                keyspace: Some("shop".into()),
                table: Some("b".into()),
                statement: Some("DELETE FROM b WHERE k = 1".into()),
                prepared_id: None,
            },
        ];
        let l = line(Format::Cassandra, &r);
        let lines: Vec<&str> = l.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("|type:UPDATE|category:DML|batch:7-5|ks:shop|scope:a|operation:INSERT INTO a (k) VALUES (1)"), "{}", lines[0]);
        assert!(lines[1].contains("|type:DELETE|"));
    }
}
