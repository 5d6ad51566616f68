//! The CQL native protocol codec (v3, v4, v5). Pure Rust on `nom`, no NGINX types, no I/O.
//!
//! # Design
//!
//! The proxy sits in the data path of every connection, so the codec is built to cost next to
//! nothing on pass-through traffic and never to panic on hostile input:
//!
//! * **Sans-IO, pull style.** A [`FrameReader`] per connection and direction is fed chunks split
//!   at any byte (down to one byte). Each call of [`FrameReader::next`] returns how many bytes it
//!   consumed and one [`Event`]; the caller calls again with the rest. [`Event::NeedMore`] means
//!   everything given was consumed.
//! * **Headers only, bodies by length.** A 9-byte envelope header is read in place (or gathered
//!   across chunks in a 9-byte array) and returned as [`Event::Header`]. The body is skipped by
//!   length unless the caller asks for it with [`FrameReader::capture_body`] right after the
//!   header; a 1.2 MB RESULT costs O(headers) and allocates nothing. A captured body is borrowed
//!   from the input when it is contiguous there, else gathered into a buffer bounded by the
//!   reader's `max_body`; compressed v4 bodies are decompressed with the claimed size checked
//!   against `max_body` before allocating ([`compression`]).
//! * **v5 segments in place.** After [`FrameReader::start_segments`] the reader expects v5
//!   segments ([`segment`]): the header's CRC24 is checked as soon as the header is in;
//!   uncompressed payloads are walked as they stream by (envelopes inside are read exactly as
//!   outside, the CRC32 is updated incrementally with `crc32fast`), and [`Event::SegmentEnd`]
//!   reports the end of a segment once its CRC32 matched. lz4 payloads (at most 128 KiB) are
//!   buffered, checked and decompressed, then walked. A self-contained segment must start and end
//!   on envelope boundaries; a large envelope spans a run of non-self-contained segments. Any CRC
//!   mismatch is an error ([`CodecError::Crc24Mismatch`], [`CodecError::Crc32Mismatch`]); note
//!   that the envelopes of an uncompressed segment are reported before its CRC32 is known, and the
//!   session closes the connection when the segment then fails.
//! * **Small when idle.** A new reader allocates nothing; buffers grow only for captured bodies
//!   that straddle chunks and for lz4 segments, and are released when the reader goes idle.
//! * **Errors, not panics.** No indexing that can panic, checked arithmetic, every failure a
//!   [`CodecError`]. After an error a reader refuses further input. An envelope of an unsupported
//!   version (v1/v2, or anything above v5) is refused at its first byte with
//!   [`CodecError::UnsupportedVersion`] carrying the version, which the session answers with
//!   [`encode::write_unsupported_version`] (ERROR 0x000A on stream 0).
//!
//! # Driving the framing
//!
//! The session switches framing between calls, at envelope boundaries:
//! * v3/v4: when the client's STARTUP carries `COMPRESSION`, call
//!   [`FrameReader::set_compression`] on both readers after the STARTUP frame (the server's reply
//!   is already compressed);
//! * v5: when the server answers STARTUP with READY or AUTHENTICATE, call
//!   [`FrameReader::start_segments`] on both readers (lz4 segments if STARTUP asked for lz4);
//!   segments start at the next byte in both directions;
//! * [`FrameReader::set_max_body`] lowers or raises the body limit (e.g. 64 KiB before
//!   authentication, 16 MiB after).
//!
//! # Messages and encoders
//!
//! [`messages`] decodes, zero-copy, the bodies the proxy acts on (STARTUP, AUTH_*, QUERY, PREPARE,
//! EXECUTE, BATCH with every child, RESULT kinds, ERROR with its extras, EVENT...), after
//! [`messages::strip_prefixes`] removed the tracing id, warnings and custom payload the flags
//! announce. [`encode`] writes what the proxy answers itself (ERROR of any code, AUTHENTICATE,
//! AUTH_SUCCESS, READY, AUTH_RESPONSE with SASL PLAIN, STARTUP, OPTIONS) in the connection's
//! current [`encode::Framing`], and [`segment`] wraps envelopes into v5 segments or re-frames a
//! segment without one of its envelopes.
//!
//! # Layout
//! `header` (envelope header, opcodes, flags), `reader` (the incremental reader), `segment`
//! (v5 segment header and writing), `crc` (CRC24, CRC32), `compression` (lz4, snappy),
//! `primitives` (the protocol's notation types as `nom` parsers), `messages` (typed bodies),
//! `encode` (writers), `error`.

// A worker must never panic on a peer's bytes: with `panic = "abort"` a panic kills it.
#![cfg_attr(not(test), deny(clippy::indexing_slicing, clippy::panic))]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod compression;
pub mod crc;
pub mod direction;
pub mod encode;
pub mod error;
pub mod header;
pub mod messages;
pub mod primitives;
pub mod reader;
pub mod segment;

pub use compression::Compression;
pub use direction::Direction;
pub use encode::{write_unsupported_version, Framing};
pub use error::CodecError;
pub use header::{Flags, Header, Opcode};
pub use reader::{Event, FrameReader};
pub use segment::SegmentHeader;
