//! Fuzzes every body decoder: the first byte picks opcode, version, direction and flags; the
//! rest is the body.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ngx_stream_cql_module::codec::messages::{Message, SaslPlain};
use ngx_stream_cql_module::codec::{Flags, Header, Opcode};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, body)) = data.split_first() else {
        return;
    };
    let Some((&fl, body)) = body.split_first() else {
        return;
    };
    let Some(opcode) = Opcode::from_u8(ctl & 0x1f) else {
        return;
    };
    let version = 3 + (ctl >> 5) % 3;
    let h = Header {
        version,
        is_response: !opcode.is_request(),
        flags: Flags(fl & 0x0e),
        stream: 0,
        opcode,
        length: body.len() as u32,
    };
    if let Ok((prefix, m)) = Message::decode(&h, body) {
        // Walk every lazy collection to its end.
        if let Some(w) = prefix.warnings {
            let _ = w.iter().count();
        }
        if let Some(c) = prefix.custom_payload {
            let _ = c.iter().count();
        }
        match m {
            Message::Batch(b) => {
                assert_eq!(b.children.iter().count(), b.children.len());
                for c in b.children.iter() {
                    assert_eq!(c.values.iter().count(), c.values.len());
                }
            }
            Message::Query(q) => assert_eq!(q.params.values.iter().count(), q.params.values.len()),
            Message::Execute(e) => {
                assert_eq!(e.params.values.iter().count(), e.params.values.len())
            }
            Message::Startup(s) => assert_eq!(s.options.iter().count(), s.options.len()),
            Message::Supported(s) => {
                for (_, v) in s.options.iter() {
                    let _ = v.iter().count();
                }
            }
            Message::AuthResponse(t) => {
                if let Some(tok) = t.token {
                    let _ = SaslPlain::parse(tok);
                }
            }
            _ => {}
        }
    }
    let _ = SaslPlain::parse(body);
});
