//! Runs the statement corpus in `tests/classify/corpus.txt` through the classifier and
//! prints every mismatch (not just the first). The format is described in
//! `tests/classify/README.md`.
//!
//! `CLASSIFY_CORPUS_PRINT=1 cargo test --test classify_corpus -- --nocapture` prints the
//! actual classification of every entry in the corpus's own format.

use std::collections::BTreeSet;

use ngx_stream_cql_module::classify::{classify, Flags, Kind, Statement};

struct Entry {
    line: usize,
    keyspace: Option<String>,
    text: String,
    expect: String,
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
        .replace('\t', "\\t")
}

fn load() -> Vec<Entry> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/classify/corpus.txt");
    let src = std::fs::read_to_string(path).expect("read corpus");
    let mut entries = Vec::new();
    let mut keyspace: Option<String> = None;
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in src.lines().enumerate() {
        let line = raw.trim_end();
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(ks) = line.strip_prefix("@ks ") {
            let ks = ks.trim();
            keyspace = (ks != "-").then(|| ks.to_string());
            continue;
        }
        if let Some(expect) = line.strip_prefix("=>") {
            let (at, text) = pending
                .take()
                .unwrap_or_else(|| panic!("line {}: expectation without a statement", i + 1));
            entries.push(Entry {
                line: at,
                keyspace: keyspace.clone(),
                text,
                expect: expect.trim().to_string(),
            });
            continue;
        }
        if let Some((at, _)) = &pending {
            panic!("line {at}: statement without an expectation");
        }
        pending = Some((i + 1, unescape(line)));
    }
    assert!(pending.is_none(), "last statement has no expectation");
    entries
}

/// The expectation line that describes `st`, in the corpus format.
fn describe(st: &Statement<'_>) -> String {
    let mut out = st.kind.name().to_string();
    if st.kind == Kind::Unparsed {
        if let Some(r) = st.rejection {
            out.push_str(&format!(" as={r}"));
        }
        out.push_str(" reason~");
        out.push_str(st.unparsed.as_deref().unwrap_or(""));
        return out;
    }
    out.push_str(&format!(" op={}", st.operation));
    if let Some(k) = &st.keyspace {
        out.push_str(&format!(" ks={k}"));
    }
    if let Some(t) = &st.table {
        out.push_str(&format!(" table={t}"));
    }
    if let Some(r) = &st.role {
        out.push_str(&format!(" role={r}"));
    }
    if !st.flags.is_empty() {
        out.push_str(&format!(
            " flags={}",
            st.flags.names().collect::<Vec<_>>().join(",")
        ));
    }
    if !st.children.is_empty() {
        out.push_str(&format!(" children={}", st.children.len()));
    }
    let needs: Vec<String> = st.needs.iter().map(|n| n.to_string()).collect();
    out.push_str(&format!(" needs={}", needs.join("; ")));
    out
}

/// Splits an expectation into its kind and `key=value` fields; `needs=` and `reason~` take
/// the rest of the line.
fn fields(expect: &str) -> (String, Vec<(String, String)>) {
    let (kind, mut rest) = expect.split_once(' ').unwrap_or((expect, ""));
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        for tail in ["needs=", "reason~"] {
            if let Some(v) = rest.strip_prefix(tail) {
                out.push((
                    tail.trim_end_matches(['=', '~']).to_string(),
                    v.trim().to_string(),
                ));
                rest = "";
            }
        }
        if rest.is_empty() {
            break;
        }
        let (field, next) = rest.split_once(' ').unwrap_or((rest, ""));
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        out.push((k.to_string(), v.to_string()));
        rest = next;
    }
    (kind.to_string(), out)
}

fn check(e: &Entry) -> Vec<String> {
    let st = classify(&e.text, e.keyspace.as_deref());
    let (kind, fields) = fields(&e.expect);
    let mut errs = Vec::new();
    if st.kind.name() != kind {
        errs.push(format!("kind: expected {kind}, got {}", st.kind));
    }
    let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
    if kind == "Unparsed" {
        let want = get("reason").unwrap_or("");
        let got = st.unparsed.as_deref().unwrap_or("");
        if !got.contains(want) {
            errs.push(format!("reason: expected to contain {want:?}, got {got:?}"));
        }
        let got = st.rejection.map(|r| r.to_string());
        match get("as") {
            None => errs.push("unparsed entries need as= (syntax, invalid, unsupported)".into()),
            Some(want) if Some(want) != got.as_deref() => {
                errs.push(format!("as: expected {want}, got {got:?}"));
            }
            Some(_) => {}
        }
        // The API the session answers with: the reason, for the matching rejection only.
        let syntax = (got.as_deref() == Some("syntax")).then_some(st.unparsed.as_deref());
        if st.syntax_error() != syntax.flatten() {
            errs.push(format!("syntax_error(): got {:?}", st.syntax_error()));
        }
        return errs;
    }
    if !st.is_unparsed() && (st.rejection.is_some() || st.syntax_error().is_some()) {
        errs.push(format!(
            "rejection: a classified statement has {:?}",
            st.rejection
        ));
    }
    for (k, _) in &fields {
        if !["op", "ks", "table", "role", "flags", "children", "needs"].contains(&k.as_str()) {
            errs.push(format!("unknown field {k:?} in the corpus"));
        }
    }
    if let Some(op) = get("op") {
        if st.operation.as_str() != op {
            errs.push(format!("op: expected {op}, got {}", st.operation));
        }
    }
    let opt = |c: &Option<std::borrow::Cow<'_, str>>| c.as_deref().map(str::to_string);
    for (name, got) in [
        ("ks", opt(&st.keyspace)),
        ("table", opt(&st.table)),
        ("role", opt(&st.role)),
    ] {
        let want = get(name).map(str::to_string);
        if want != got {
            errs.push(format!("{name}: expected {want:?}, got {got:?}"));
        }
    }
    let want_flags: BTreeSet<&str> = get("flags")
        .map(|f| f.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    for f in &want_flags {
        if Flags::from_name(f).is_none() {
            errs.push(format!("unknown flag {f:?} in the corpus"));
        }
    }
    let got_flags: BTreeSet<&str> = st.flags.names().collect();
    if want_flags != got_flags {
        errs.push(format!("flags: expected {want_flags:?}, got {got_flags:?}"));
    }
    let want_children: usize = get("children").map_or(0, |c| c.parse().unwrap_or(usize::MAX));
    if want_children != st.children.len() {
        errs.push(format!(
            "children: expected {want_children}, got {}",
            st.children.len()
        ));
    }
    let want_needs: Vec<&str> = get("needs")
        .map(|n| n.split("; ").filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let got_needs: Vec<String> = st.needs.iter().map(|n| n.to_string()).collect();
    if want_needs != got_needs {
        errs.push(format!("needs: expected {want_needs:?}, got {got_needs:?}"));
    }
    errs
}

#[test]
fn corpus() {
    let entries = load();
    let print = std::env::var_os("CLASSIFY_CORPUS_PRINT").is_some();
    let mut failures = 0;
    let mut kinds = BTreeSet::new();
    for e in &entries {
        let st = classify(&e.text, e.keyspace.as_deref());
        kinds.insert(st.kind.name());
        if print {
            println!("{}\n=> {}\n", escape(&e.text), describe(&st));
        }
        let errs = check(e);
        if !errs.is_empty() {
            failures += 1;
            eprintln!(
                "corpus.txt:{} {:?} (current keyspace {:?})",
                e.line, e.text, e.keyspace
            );
            for err in errs {
                eprintln!("    {err}");
            }
            eprintln!("    actual: => {}", describe(&st));
        }
    }
    let missing: Vec<_> = Kind::ALL
        .iter()
        .map(|k| k.name())
        .filter(|k| !kinds.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "kinds the corpus does not cover: {missing:?}"
    );
    assert!(
        entries.len() >= 300,
        "the corpus has {} entries, fewer than 300",
        entries.len()
    );
    assert_eq!(
        failures,
        0,
        "{failures} of {} corpus entries do not match (see above)",
        entries.len()
    );
    eprintln!("{} corpus entries match", entries.len());
}
