//! Formatting records as lines, with what does not change rendered once: the connection and
//! identity fields once per session (a [`Renderer`]), the statement fields once per statement
//! (a [`Subject`], which every EXECUTE of a prepared id shares). A line is then a few copies
//! plus its time, stream, decision, outcome and latency. The bytes are those of the full
//! rendering field for field (`reference.rs` holds it, and its tests compare the two).

use core::fmt::Write;
use std::rc::Rc;

use super::{Event, Format, Outcome, Peer, Record, Settings, Who};

/// Renders the records of one connection as lines, in the log's format.
#[derive(Clone, Debug)]
pub struct Renderer {
    format: Format,
    redact_literals: bool,
    /// NGINX's connection number, for Cassandra's batch ids.
    session: u64,
    /// The fields of the connection and its identity, rendered. JSON:
    /// `"session":..,"client":..,"server":..,"principal":..,"roles":[..]` and `,"auth":..`;
    /// Cassandra: `user:..|host:..|source:/..|port:..|timestamp:`.
    identity: Vec<u8>,
    /// The last millisecond rendered as ISO 8601, and its text.
    time: Option<(u64, [u8; 24])>,
    /// Where subjects are rendered before they are shared.
    scratch: Vec<u8>,
    /// JSON: the last rule written, and its rendering.
    rule: Option<(Rc<str>, Vec<u8>)>,
}

/// What a record is about, rendered once: the keyspace, table, statement text (masked as the
/// log's settings say) and prepared id. Cloning shares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// The keyspace as it is (for the filter), then the fields as the line has them. JSON:
    /// `,"keyspace":..,"table":..,"statement":..,"prepared_id":..` (those present);
    /// Cassandra: `|ks:..|scope:..` then the statement text, line breaks as spaces.
    bytes: Rc<[u8]>,
    /// The length of the keyspace at the start of `bytes`; `None`: no keyspace.
    keyspace: Option<usize>,
    /// Cassandra: where the statement text starts in `bytes`; `None`: no statement.
    text: Option<usize>,
    /// Whether the fields include the prepared id.
    has_id: bool,
}

/// A statement's text larger than this leaves the renderer's scratch buffer to be freed
/// rather than kept for the next one.
const SCRATCH_KEPT: usize = 4096;

impl Renderer {
    /// The renderer of a connection, naming `who` until [`Renderer::identify`] says
    /// otherwise.
    pub fn new(settings: &Settings, peer: &Peer, who: &Who) -> Self {
        let mut renderer = Renderer {
            format: settings.format,
            redact_literals: settings.redact_literals,
            session: peer.session,
            identity: Vec::new(),
            time: None,
            scratch: Vec::new(),
            rule: None,
        };
        renderer.identify(peer, who);
        renderer
    }

    /// The connection or its identity changed (a login): renders them again.
    pub fn identify(&mut self, peer: &Peer, who: &Who) {
        self.session = peer.session;
        self.identity.clear();
        let out = &mut self.identity;
        match self.format {
            Format::Json => {
                out.extend_from_slice(b"\"session\":");
                decimal(peer.session, out);
                out.extend_from_slice(b",\"client\":");
                string(out, &peer.client);
                out.extend_from_slice(b",\"server\":");
                string(out, &peer.server);
                out.extend_from_slice(b",\"principal\":");
                match &who.principal {
                    Some(p) => string(out, p),
                    None => out.extend_from_slice(b"null"),
                }
                out.extend_from_slice(b",\"roles\":[");
                for (i, role) in who.roles.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    string(out, role);
                }
                out.push(b']');
                if !who.auth.is_empty() {
                    out.extend_from_slice(b",\"auth\":");
                    string(out, who.auth);
                }
            }
            Format::Cassandra => {
                let (source, port) = match peer.client.rsplit_once(':') {
                    Some((host, port)) => {
                        (host.trim_start_matches('[').trim_end_matches(']'), port)
                    }
                    None => (peer.client.as_str(), "0"),
                };
                let user = who.principal.as_deref().unwrap_or("null");
                for part in [
                    "user:",
                    user,
                    "|host:",
                    &peer.server,
                    "|source:/",
                    source,
                    "|port:",
                    port,
                    "|timestamp:",
                ] {
                    spaced(out, part);
                }
            }
        }
    }

    /// Renders what a record is about: `text` is the statement's text as sent, masked here
    /// as the settings say.
    pub fn subject(
        &mut self,
        keyspace: Option<&str>,
        table: Option<&str>,
        text: Option<&str>,
        prepared_id: Option<&[u8]>,
    ) -> Subject {
        let text = text.map(|t| super::redact(t, self.redact_literals));
        let out = &mut self.scratch;
        out.clear();
        out.extend_from_slice(keyspace.unwrap_or_default().as_bytes());
        let mut text_at = None;
        match self.format {
            Format::Json => {
                for (key, value) in [
                    (&b",\"keyspace\":"[..], keyspace),
                    (b",\"table\":", table),
                    (b",\"statement\":", text.as_deref()),
                ] {
                    if let Some(value) = value {
                        out.extend_from_slice(key);
                        string(out, value);
                    }
                }
                if let Some(id) = prepared_id {
                    out.extend_from_slice(b",\"prepared_id\":\"");
                    write_hex(id, out);
                    out.push(b'"');
                }
            }
            Format::Cassandra => {
                if let Some(keyspace) = keyspace.filter(|k| !k.is_empty()) {
                    out.extend_from_slice(b"|ks:");
                    spaced(out, keyspace);
                }
                if let Some(table) = table.filter(|t| !t.is_empty()) {
                    out.extend_from_slice(b"|scope:");
                    spaced(out, table);
                }
                if let Some(text) = &text {
                    text_at = Some(out.len());
                    spaced(out, text);
                }
            }
        }
        let subject = Subject {
            bytes: Rc::from(out.as_slice()),
            keyspace: keyspace.map(str::len),
            text: text_at,
            has_id: prepared_id.is_some(),
        };
        if out.capacity() > SCRATCH_KEPT {
            *out = Vec::new();
        }
        subject
    }

    /// Appends `record` as one line (ending in `\n`; Cassandra's format writes a line per
    /// statement of a batch).
    pub fn write(&mut self, record: &Record, out: &mut Vec<u8>) {
        match self.format {
            Format::Json => self.json(record, out),
            Format::Cassandra => self.cassandra(record, out),
        }
    }

    /// The ISO 8601 text of `unix_ms`, kept for the lines of the same millisecond.
    fn time(&mut self, unix_ms: u64) -> [u8; 24] {
        match self.time {
            Some((ms, text)) if ms == unix_ms => text,
            _ => {
                let text = super::time::iso8601_ms_bytes(unix_ms);
                self.time = Some((unix_ms, text));
                text
            }
        }
    }

    fn json(&mut self, r: &Record, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":\"");
        out.extend_from_slice(&self.time(r.time_ms));
        out.extend_from_slice(b"\",\"event\":");
        name(out, r.event.as_str());
        out.push(b',');
        out.extend_from_slice(&self.identity);
        out.extend_from_slice(b",\"category\":");
        name(out, r.category.as_str());
        out.extend_from_slice(b",\"type\":");
        name(out, r.operation);
        if let Some(stream) = r.stream {
            out.extend_from_slice(b",\"stream\":");
            decimal(stream, out);
        }
        if let Some(subject) = &r.subject {
            out.extend_from_slice(subject.fields());
        }
        if let Some(id) = r.late_prepared_id() {
            out.extend_from_slice(b",\"prepared_id\":\"");
            write_hex(id, out);
            out.push(b'"');
        }
        if !r.batch.is_empty() {
            out.extend_from_slice(b",\"batch\":[");
            for (i, child) in r.batch.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"type\":");
                name(out, child.operation);
                out.extend_from_slice(child.subject.fields());
                out.push(b'}');
            }
            out.push(b']');
        }
        if let Some(allowed) = r.allowed {
            out.extend_from_slice(match (allowed, r.would_deny) {
                (true, false) => b",\"decision\":\"allow\"",
                (true, true) => b",\"decision\":\"would_deny\"",
                (false, _) => b",\"decision\":\"deny\"",
            });
        }
        if let Some(reason) = r.reason.as_deref() {
            out.extend_from_slice(b",\"reason\":");
            string(out, reason);
        }
        if let Some(rule) = &r.rule {
            out.extend_from_slice(b",\"rule\":");
            // A connection's requests are mostly allowed by the same rule, shared: it is
            // escaped once.
            match &self.rule {
                Some((last, rendered)) if Rc::ptr_eq(last, rule) => out.extend_from_slice(rendered),
                _ => {
                    let mut rendered = Vec::with_capacity(rule.len() + 2);
                    string(&mut rendered, rule);
                    out.extend_from_slice(&rendered);
                    self.rule = Some((Rc::clone(rule), rendered));
                }
            }
        }
        match r.outcome {
            Some(Outcome::Success) => out.extend_from_slice(b",\"outcome\":\"success\""),
            Some(Outcome::Error(code)) => {
                out.extend_from_slice(b",\"outcome\":\"error\",\"error_code\":\"");
                error_code(code, out);
                out.push(b'"');
            }
            Some(Outcome::NoResponse) => out.extend_from_slice(b",\"outcome\":\"no_response\""),
            None => {}
        }
        if let Some(latency) = r.latency_us {
            out.extend_from_slice(b",\"latency_us\":");
            decimal(latency, out);
        }
        if let Some(summary) = &r.summary {
            for (key, value) in [
                (&b",\"requests\":"[..], summary.requests),
                (b",\"denied\":", summary.denied),
                (b",\"duration_ms\":", summary.duration_ms),
                (b",\"client_frames\":", summary.client_frames),
                (b",\"server_frames\":", summary.server_frames),
            ] {
                out.extend_from_slice(key);
                decimal(value, out);
            }
        }
        out.extend_from_slice(b"}\n");
    }

    /// Cassandra's `AuditLogEntry.getLogString()`: a denial is an `UNAUTHORIZED_ATTEMPT`,
    /// an upstream error a `REQUEST_FAILURE`, each with the reason before the statement, and
    /// a batch one line per statement sharing a batch id. Line breaks in text become spaces.
    fn cassandra(&mut self, r: &Record, out: &mut Vec<u8>) {
        let (operation, category) = match (r.allowed, r.outcome) {
            (Some(false), _) if r.event == Event::Request => ("UNAUTHORIZED_ATTEMPT", "AUTH"),
            (_, Some(Outcome::Error(_))) => ("REQUEST_FAILURE", "ERROR"),
            _ => (r.operation, r.category.as_str()),
        };
        let prefix = match (&r.reason, r.outcome) {
            (Some(reason), _) => Prefix::Reason(reason),
            (None, Some(Outcome::Error(code))) => Prefix::Error(code),
            _ => Prefix::None,
        };
        let line = Line {
            record: r,
            category,
            prefix,
        };
        if r.batch.is_empty() {
            line.write(self, operation, r.subject.as_ref(), false, out);
            return;
        }
        for child in &r.batch {
            let child_operation = match operation {
                "UNAUTHORIZED_ATTEMPT" | "REQUEST_FAILURE" => operation,
                _ => child.operation,
            };
            line.write(self, child_operation, Some(&child.subject), true, out);
        }
    }
}

/// What comes before a statement's text in Cassandra's `operation:` field.
#[derive(Clone, Copy)]
enum Prefix<'a> {
    Reason(&'a str),
    /// `Error 0x2200`.
    Error(i32),
    None,
}

/// What the Cassandra lines of one record share.
struct Line<'a> {
    record: &'a Record,
    category: &'a str,
    prefix: Prefix<'a>,
}

impl Line<'_> {
    fn write(
        &self,
        renderer: &Renderer,
        operation: &str,
        subject: Option<&Subject>,
        batch: bool,
        out: &mut Vec<u8>,
    ) {
        let r = self.record;
        out.extend_from_slice(&renderer.identity);
        decimal(r.time_ms, out);
        out.extend_from_slice(b"|type:");
        spaced(out, operation);
        out.extend_from_slice(b"|category:");
        spaced(out, self.category);
        if batch {
            out.extend_from_slice(b"|batch:");
            decimal(renderer.session, out);
            out.push(b'-');
            decimal(r.stream.unwrap_or(0), out);
        }
        let text = subject.and_then(Subject::text);
        if let Some(subject) = subject {
            out.extend_from_slice(subject.scope());
        }
        match (self.prefix, text) {
            (Prefix::None, Some(text)) if !text.is_empty() => {
                out.extend_from_slice(b"|operation:");
                out.extend_from_slice(text);
            }
            (Prefix::None, _) => {}
            (Prefix::Reason(""), None) => {}
            (prefix, text) => {
                out.extend_from_slice(b"|operation:");
                match prefix {
                    Prefix::Reason(reason) => spaced(out, reason),
                    Prefix::Error(code) => {
                        out.extend_from_slice(b"Error ");
                        error_code(code, out);
                    }
                    Prefix::None => {}
                }
                if let Some(text) = text {
                    out.extend_from_slice(b"; ");
                    out.extend_from_slice(text);
                }
            }
        }
        if let Some(summary) = &r.summary {
            out.extend_from_slice(b"|requests:");
            decimal(summary.requests, out);
            out.extend_from_slice(b"|denied:");
            decimal(summary.denied, out);
            out.extend_from_slice(b"|duration_ms:");
            decimal(summary.duration_ms, out);
        }
        out.push(b'\n');
    }
}

impl Subject {
    /// The keyspace, as it is (the filter's).
    pub fn keyspace(&self) -> Option<&str> {
        let bytes = self.bytes.get(..self.keyspace?)?;
        core::str::from_utf8(bytes).ok()
    }

    /// Whether the prepared id is one of the fields.
    pub fn has_prepared_id(&self) -> bool {
        self.has_id
    }

    /// The bytes the subject holds, for cache bounds.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the subject holds no bytes (no keyspace and no field).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// JSON: the fields; Cassandra: the `|ks:..|scope:..` fields and the text.
    fn fields(&self) -> &[u8] {
        self.bytes
            .get(self.keyspace.unwrap_or(0)..)
            .unwrap_or_default()
    }

    /// Cassandra: the `|ks:..|scope:..` fields.
    fn scope(&self) -> &[u8] {
        let start = self.keyspace.unwrap_or(0);
        let end = self.text.unwrap_or(self.bytes.len());
        self.bytes.get(start..end).unwrap_or_default()
    }

    /// Cassandra: the statement's text, line breaks as spaces.
    fn text(&self) -> Option<&[u8]> {
        self.bytes.get(self.text?..)
    }
}

impl Record {
    /// The prepared id to write after the subject's fields: one learnt from the response,
    /// when the subject has none.
    fn late_prepared_id(&self) -> Option<&[u8]> {
        match &self.subject {
            Some(subject) if subject.has_id => None,
            _ => self.prepared_id.as_deref(),
        }
    }
}

/// Bytes as `0x` and lower-case hex digits (prepared ids).
pub fn hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(2 + bytes.len() * 2);
    write_hex(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends bytes as `0x` and lower-case hex digits.
pub fn write_hex(bytes: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"0x");
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
}

/// An ERROR code as `0x2200`.
fn error_code(code: i32, out: &mut Vec<u8>) {
    let _ = write!(Bytes(out), "0x{code:04x}");
}

/// Appends one of the module's own names (an event, category or operation: ASCII letters
/// and `_`, nothing to escape) as a JSON string.
fn name(out: &mut Vec<u8>, s: &'static str) {
    debug_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

/// What a byte of a JSON string is written as: `0` itself, `u` `\u00XX`, any other byte
/// `\` and that byte. Escaped: `"`, `\`, the C0 control characters and DEL; `\n`, `\r` and
/// `\t` by their letters, the others (`\b` and `\f` too) as `\u00XX`.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x7f] = b'u';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table
};

/// Appends `s` as a JSON string: quoted, with `"`, `\` and control characters escaped (see
/// [`ESCAPE`]).
///
/// Against `serde_json::to_writer` into the same reused buffer (`cargo bench --bench audit
/// -- escape`: medians of three runs on a busy 2-core x86-64 machine, then instructions per
/// string under callgrind), this escaper, then serde_json:
///
/// | string | time | instructions |
/// |---|---|---|
/// | a 116-byte principal, nothing to escape | 20-25 ns, 59-75 ns | 351, 1,146 |
/// | a 200-byte statement, quotes and a line break | 102-152 ns, 118-148 ns | 1,243, 2,040 |
/// | 2 KiB of statements, non-ASCII text and line breaks | 0.67-1.0 µs, 1.5-1.9 µs | 8,102, 19,353 |
/// | 256 control characters | 0.95-1.17 µs, 0.53-1.03 µs | 9,871, 8,749 |
///
/// serde_json would not write the same bytes: it writes `\b` and `\f` where this writes
/// `\u0008` and `\u000c`, and DEL as it is.
pub fn string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const CHUNK: usize = 32;
    out.push(b'"');
    let bytes = s.as_bytes();
    // Most values need no escape, and most bytes of the others: a pass without branches
    // (it vectorizes) tells for each chunk, and the runs without escapes are copied whole.
    let mut written = 0;
    for (chunk_at, chunk) in (0..).step_by(CHUNK).zip(bytes.chunks(CHUNK)) {
        if plain(chunk) {
            continue;
        }
        for (at, &b) in (chunk_at..).zip(chunk) {
            let escape = ESCAPE[usize::from(b)];
            if escape == 0 {
                continue;
            }
            if written < at {
                out.extend_from_slice(bytes.get(written..at).unwrap_or_default());
            }
            if escape == b'u' {
                let (high, low) = (HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]);
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', high, low]);
            } else {
                out.extend_from_slice(&[b'\\', escape]);
            }
            written = at + 1;
        }
    }
    out.extend_from_slice(bytes.get(written..).unwrap_or_default());
    out.push(b'"');
}

/// Whether no byte of `bytes` needs an escape in a JSON string.
fn plain(bytes: &[u8]) -> bool {
    bytes.iter().fold(true, |plain, &b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\') & (b != 0x7f)
    })
}

/// Appends `s` with its line breaks (`\n`, `\r`) as spaces, as Cassandra's lines have them.
fn spaced(out: &mut Vec<u8>, s: &str) {
    out.extend(
        s.bytes()
            .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
}

/// `fmt::Write` into bytes.
struct Bytes<'a>(&'a mut Vec<u8>);

impl Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Appends `n` in decimal, with its sign if it has one.
fn decimal(n: impl itoa::Integer, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
impl Subject {
    /// The shared bytes, to tell whether two subjects are one.
    pub(super) fn bytes_for_test(&self) -> Rc<[u8]> {
        Rc::clone(&self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::super::reference::{Plain, PlainChild};
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

    fn line_as(format: Format, who: &Who, r: &Plain) -> String {
        let settings = Settings {
            format,
            ..Settings::default()
        };
        let mut renderer = Renderer::new(&settings, &peer(), who);
        let record = r.record(&mut renderer, false);
        let mut out = Vec::new();
        renderer.write(&record, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn line(format: Format, r: &Plain) -> String {
        line_as(format, &who(), r)
    }

    fn select() -> Plain {
        let mut r = Plain::new(1_795_253_400_123, Event::Request, Category::Query, "SELECT");
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
        r.batch = vec![PlainChild {
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
        let l = line_as(Format::Json, &Who::default(), &r);
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert!(v["principal"].is_null() && v["roles"] == serde_json::json!([]));
    }

    /// `s` as a JSON string, character by character.
    fn escaped(s: &str) -> Vec<u8> {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c < ' ' || c == '\u{7f}' => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('"');
        out.into_bytes()
    }

    #[test]
    fn json_escapes_of_every_ascii_character_anywhere_and_text_kept_as_it_is() {
        let mut out = Vec::new();
        for c in (0u8..0x80).map(char::from) {
            // Before, across and after the ends of the chunks the escaper looks at.
            for at in 0..100 {
                let s = format!("{}{c}{}", "é".repeat(at / 2), "x".repeat(at % 2 + at / 3));
                out.clear();
                super::string(&mut out, &s);
                assert_eq!(out, escaped(&s), "{s:?}");
            }
        }
        for s in [
            "",
            "\u{80}\u{9f}€𝄞",
            "\n\n\"\\\u{0}",
            &"a\"\u{1f}é\u{7f}".repeat(300),
        ] {
            out.clear();
            super::string(&mut out, s);
            assert_eq!(out, escaped(s), "{s:?}");
        }
        out.clear();
        super::string(&mut out, "\u{8}\u{c}\u{1b}");
        assert_eq!(out, br#""\u0008\u000c\u001b""#);
    }

    #[test]
    fn decimals() {
        let mut out = Vec::new();
        for n in [0, 7, 10, 412, u64::MAX] {
            out.clear();
            super::decimal(n, &mut out);
            assert_eq!(out, n.to_string().into_bytes());
        }
        for n in [0, 5, -1, i16::MIN, i16::MAX] {
            out.clear();
            super::decimal(n, &mut out);
            assert_eq!(out, n.to_string().into_bytes());
        }
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
        let mut login = Plain::new(1, Event::Login, Category::Auth, "LOGIN_ERROR");
        login.allowed = Some(false);
        login.reason = Some("token expired".into());
        assert_eq!(
            line_as(Format::Cassandra, &Who::default(), &login),
            "user:null|host:127.0.0.1:9042|source:/127.0.0.1|port:53422|timestamp:1|type:LOGIN_ERROR|category:AUTH|operation:token expired\n"
        );
    }

    #[test]
    fn cassandra_batch_is_a_line_per_statement() {
        let mut r = select();
        r.operation = "BATCH";
        r.category = Category::Dml;
        r.batch = vec![
            PlainChild {
                operation: "UPDATE",
                keyspace: Some("shop".into()),
                table: Some("a".into()),
                statement: Some("INSERT INTO a (k) VALUES (1)".into()),
                prepared_id: None,
            },
            PlainChild {
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

    #[test]
    fn the_time_of_the_same_millisecond_is_rendered_once_and_a_new_one_again() {
        let mut renderer = Renderer::new(&Settings::default(), &peer(), &who());
        let mut out = Vec::new();
        for ms in [0, 0, 1_795_253_400_123, 1_795_253_400_123, 1] {
            out.clear();
            renderer.write(
                &Record::new(ms, Event::Login, Category::Auth, "LOGIN_SUCCESS"),
                &mut out,
            );
            let mut iso = String::new();
            iso8601_ms(ms, &mut iso);
            assert!(String::from_utf8_lossy(&out).starts_with(&format!("{{\"time\":\"{iso}\"")));
        }
    }
}
