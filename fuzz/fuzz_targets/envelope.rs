//! Fuzzes the envelope reader: the first bytes choose direction, limits, compression, capture and
//! how the rest is cut into chunks; the reader must never panic, must consume what it is given,
//! and must stay within its limits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ngx_stream_cql_module::codec::messages::Message;
use ngx_stream_cql_module::codec::{Compression, Direction, Event, FrameReader};

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let Some((&cut, rest)) = rest.split_first() else {
        return;
    };
    let dir = if ctl & 1 == 0 {
        Direction::ClientToServer
    } else {
        Direction::ServerToClient
    };
    let max_body = if ctl & 2 == 0 { 64 * 1024 } else { 1 << 20 };
    let mut r = FrameReader::new(dir, max_body);
    r.set_compression(match (ctl >> 2) & 3 {
        1 => Compression::Lz4,
        2 => Compression::Snappy,
        _ => Compression::None,
    });
    let capture = ctl & 0x10 != 0;
    let switch_segments = ctl & 0x20 != 0;
    let chunk = usize::from(cut % 17) + 1;
    let mut frames = 0u32;
    for piece in rest.chunks(chunk) {
        let mut off = 0;
        loop {
            // The cheap path agrees with the reader: a whole frame it sees is the frame `next`
            // reads, header then body, taking exactly its bytes.
            // (A compressed body it does not check: the session reads those the usual way.)
            if let Some(h) = r
                .whole_frame(&piece[off..])
                .filter(|h| !(capture && h.flags.compression()))
            {
                let end = off + 9 + h.length as usize;
                let (n, ev) = r.next(&piece[off..end]).expect("a frame whole_frame accepts");
                assert!(matches!(ev, Event::Header(got) if got == h), "{ev:?} is not {h:?}");
                off += n;
                if capture {
                    r.capture_body();
                }
                let (n, ev) = r.next(&piece[off..end]).expect("its body");
                assert!(matches!(ev, Event::Frame { header, .. } if header == h), "{ev:?}");
                off += n;
                assert_eq!(off, end, "whole_frame's frame is 9 + length bytes");
                frames += 1;
                if switch_segments && frames == 1 {
                    r.start_segments(ctl & 0x40 != 0);
                }
                continue;
            }
            match r.next(&piece[off..]) {
                Ok((n, ev)) => {
                    off += n;
                    match ev {
                        Event::NeedMore => {
                            assert_eq!(off, piece.len());
                            break;
                        }
                        Event::Header(h) => {
                            assert!(h.length <= max_body);
                            if capture {
                                r.capture_body();
                            }
                        }
                        Event::Frame { header, body } => {
                            frames += 1;
                            if let Some(b) = body {
                                assert!(b.len() <= max_body as usize);
                                let _ = Message::decode(&header, b);
                            }
                            if switch_segments && frames == 1 {
                                r.start_segments(ctl & 0x40 != 0);
                            }
                        }
                        Event::SegmentEnd { .. } => {}
                    }
                }
                Err(_) => return,
            }
        }
    }
});
