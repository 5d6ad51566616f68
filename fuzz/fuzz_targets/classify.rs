//! Fuzzes the CQL statement classifier: any text, with and without a current keyspace,
//! must classify without panicking, and a classified statement must name what it needs.
//!
//! Seeds: `fuzz/corpus/classify` (git-ignored) is made from the statement corpus with
//! `grep -v '^[#=]' tests/classify/corpus.txt | ...` as documented in tests/classify/README.md.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ngx_stream_cql_module::classify::{classify, Kind};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for ks in [None, Some("demo"), Some("Mixed Ks")] {
        let st = classify(text, ks);
        match st.kind {
            Kind::Unparsed => {
                assert!(st.needs.is_empty());
                assert!(st.unparsed.is_some());
                // Every rejection says how Cassandra would answer it.
                assert!(st.rejection.is_some(), "{text:?} rejected without a kind");
            }
            _ => {
                assert!(!st.needs.is_empty(), "{text:?} classified with no needs");
                assert!(st.unparsed.is_none());
                assert!(st.rejection.is_none());
                for n in &st.needs {
                    let _ = n.to_string();
                }
                for c in &st.children {
                    assert!(matches!(c.kind, Kind::Insert | Kind::Update | Kind::Delete));
                }
            }
        }
    }
});
