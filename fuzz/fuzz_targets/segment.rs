//! Fuzzes the v5 segment reader. Random bytes rarely pass a CRC24, so half of the inputs are
//! first wrapped into valid segments (payload cut from the input), which drives the envelope
//! walking inside segments, lz4 decompression and the self-contained checks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ngx_stream_cql_module::codec::messages::Message;
use ngx_stream_cql_module::codec::segment::write_segment;
use ngx_stream_cql_module::codec::{Direction, Event, FrameReader};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let lz4 = ctl & 1 != 0;
    let dir = if ctl & 2 == 0 {
        Direction::ClientToServer
    } else {
        Direction::ServerToClient
    };
    let wrapped;
    let stream: &[u8] = if ctl & 4 != 0 {
        // Build segments from the input: each segment takes a length byte then that many bytes.
        let mut out = Vec::new();
        let mut i = rest;
        while let Some((&n, tail)) = i.split_first() {
            let n = (usize::from(n) * 3).min(tail.len());
            let (p, t) = tail.split_at(n);
            write_segment(p, n % 2 == 0, lz4, &mut out);
            i = t;
        }
        wrapped = out;
        &wrapped
    } else {
        rest
    };
    let mut r = FrameReader::new(dir, 1 << 20);
    r.start_segments(lz4);
    let chunk = usize::from(ctl >> 3) + 1;
    for piece in stream.chunks(chunk) {
        let mut off = 0;
        loop {
            match r.next(&piece[off..]) {
                Ok((n, ev)) => {
                    off += n;
                    match ev {
                        Event::NeedMore => {
                            assert_eq!(off, piece.len());
                            break;
                        }
                        Event::Header(_) => {
                            if ctl & 0x80 != 0 {
                                r.capture_body()
                            }
                        }
                        Event::Frame { header, body } => {
                            if let Some(b) = body {
                                let _ = Message::decode(&header, b);
                            }
                        }
                        Event::SegmentEnd { payload_len, .. } => {
                            assert!(payload_len < (1 << 17));
                        }
                    }
                }
                Err(_) => return,
            }
        }
    }
});
