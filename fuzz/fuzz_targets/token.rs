//! Fuzzes token validation: arbitrary text as the password of the CQL handshake, and valid
//! tokens with bytes of the input spliced in.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let validator = common::validator();
    let text = String::from_utf8_lossy(data);
    let _ = validator.validate(&text, common::NOW);
    let good = common::token(&serde_json::json!({"sub": "fuzz", "exp": common::NOW + 60, "groups": ["g"]}));
    if let Some((&at, rest)) = data.split_first() {
        let at = usize::from(at) % good.len();
        let spliced = format!("{}{}{}", &good[..at], String::from_utf8_lossy(rest), &good[at..]);
        let _ = validator.validate(&spliced, common::NOW);
    }
});
