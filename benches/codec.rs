//! Codec benchmarks: walking large RESULT frames (must touch only headers), small frames, QUERY
//! decoding, and v5 segments (CRC32 in place, and lz4 decompression).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ngx_stream_cql_module::codec::encode::Framing;
use ngx_stream_cql_module::codec::messages::Query;
use ngx_stream_cql_module::codec::primitives::write;
use ngx_stream_cql_module::codec::segment::write_segment;
use ngx_stream_cql_module::codec::{Direction, Event, FrameReader, Opcode};

/// Feeds `bytes` in 64 KiB reads; captures bodies of the opcodes `capture` selects.
fn walk(r: &mut FrameReader, bytes: &[u8], capture: fn(Opcode) -> bool) -> usize {
    let mut frames = 0;
    for chunk in bytes.chunks(65536) {
        let mut off = 0;
        loop {
            match r.next(&chunk[off..]) {
                Ok((n, ev)) => {
                    off += n;
                    match ev {
                        Event::NeedMore => break,
                        Event::Header(h) => {
                            if capture(h.opcode) {
                                r.capture_body()
                            }
                        }
                        Event::Frame { body, .. } => {
                            black_box(body);
                            frames += 1;
                        }
                        Event::SegmentEnd { .. } => {}
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    frames
}

fn query_body(version: u8) -> Vec<u8> {
    let mut b = Vec::new();
    write::long_string(
        &mut b,
        "SELECT id, name, tags FROM demo.users WHERE id IN (1, 2, 3) AND name = 'ada'",
    );
    write::short(&mut b, 0x000A);
    let f: u32 = 0x01 | 0x04 | 0x08 | 0x20 | if version >= 5 { 0x80 } else { 0 };
    if version >= 5 {
        write::int(&mut b, f as i32);
    } else {
        b.push(f as u8);
    }
    write::short(&mut b, 3);
    for v in [&b"\0\0\0\x01"[..], b"ada lovelace", b"\0\0\0\x02"] {
        write::bytes(&mut b, Some(v));
    }
    write::int(&mut b, 5000);
    write::bytes(
        &mut b,
        Some(&[4, 0, 0, 0, 1, 0, 0xf0, 0x7f, 0xff, 0xff, 0xfd, 0]),
    );
    b.extend_from_slice(&1_795_289_111_393_512i64.to_be_bytes());
    if version >= 5 {
        write::string(&mut b, "demo");
    }
    b
}

fn benches(c: &mut Criterion) {
    // 16 RESULT frames of 1.2 MB, as a server streams them.
    let f4 = Framing::envelopes(4);
    let mut big = Vec::new();
    for s in 0..16 {
        f4.write_envelope(s, Opcode::Result, 0, &vec![0x5a; 1_200_116], &mut big);
    }
    let mut g = c.benchmark_group("walk");
    g.throughput(Throughput::Bytes(big.len() as u64));
    g.bench_function("large_results_skip_bodies", |b| {
        b.iter(|| {
            let mut r = FrameReader::new(Direction::ServerToClient, 16 << 20);
            assert_eq!(walk(&mut r, &big, |_| false), 16);
        })
    });
    g.finish();

    // 10 000 small frames (QUERY requests of ~150 bytes), bodies captured as the proxy does.
    let q = query_body(4);
    let mut small = Vec::new();
    for s in 0..10_000 {
        f4.write_envelope((s % 32000) as i16, Opcode::Query, 0, &q, &mut small);
    }
    let mut g = c.benchmark_group("small_frames");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("queries_captured", |b| {
        b.iter(|| {
            let mut r = FrameReader::new(Direction::ClientToServer, 16 << 20);
            assert_eq!(walk(&mut r, &small, |o| o == Opcode::Query), 10_000);
        })
    });
    g.bench_function("queries_skipped", |b| {
        b.iter(|| {
            let mut r = FrameReader::new(Direction::ClientToServer, 16 << 20);
            assert_eq!(walk(&mut r, &small, |_| false), 10_000);
        })
    });
    g.finish();

    let mut g = c.benchmark_group("decode");
    let q4 = query_body(4);
    let q5 = query_body(5);
    g.bench_function("query_v4", |b| {
        b.iter(|| black_box(Query::decode(black_box(&q4), 4).unwrap()))
    });
    g.bench_function("query_v5_keyspace", |b| {
        b.iter(|| black_box(Query::decode(black_box(&q5), 5).unwrap()))
    });
    g.finish();

    // v5: self-contained segments packed with RESULT envelopes, plain and lz4.
    let f5 = Framing::envelopes(5);
    let mut payload = Vec::new();
    // Rows of text with some variety, so lz4 compresses them about as well as real result sets.
    let row: Vec<u8> = (0u32..4000)
        .map(|i| {
            let x = i.wrapping_mul(2_654_435_761) >> 24;
            if x % 3 == 0 {
                b"abcdefghijklmnopqrstuvwxyz"[(x % 26) as usize]
            } else {
                b"id=42 name=ada tags={math,engines} "[(i % 35) as usize]
            }
        })
        .collect();
    while payload.len() + row.len() + 9 < 120_000 {
        f5.write_envelope(1, Opcode::Result, 0, &row, &mut payload);
    }
    let per_seg = payload.len() / (row.len() + 9);
    let mut g = c.benchmark_group("v5_segments");
    for lz4 in [false, true] {
        let mut stream = Vec::new();
        for _ in 0..32 {
            write_segment(&payload, true, lz4, &mut stream);
        }
        let name = if lz4 {
            "lz4_crc_decompress_walk"
        } else {
            "plain_crc_walk"
        };
        // Throughput counts payload bytes (decompressed for lz4), i.e. envelope bytes delivered.
        g.throughput(Throughput::Bytes(32 * payload.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut r = FrameReader::new(Direction::ServerToClient, 16 << 20);
                r.start_segments(lz4);
                assert_eq!(walk(&mut r, &stream, |_| false), 32 * per_seg);
            })
        });
    }
    g.finish();
}

criterion_group!(codec, benches);
criterion_main!(codec);
