//! The order of a connection's requests: which streams have a request at the server, and
//! which requests wait behind a keyspace change.
//!
//! Cassandra runs the requests of one connection concurrently, and a USE changes the keyspace
//! every later unqualified statement of the connection runs in. So that the keyspace the proxy
//! decides against is the keyspace Cassandra runs the request in, a keyspace change is a
//! barrier: it goes to the server only when no other request of the connection is there, and
//! every request that follows it waits (parked here, bounded by `cql_max_queued_size` through
//! the I/O layer's back-pressure) until Cassandra has answered it. Only that answer moves the
//! keyspace.
//!
//! A stream id names one request at a time: a request on a stream that already has one in
//! flight (at the server or parked) is a protocol violation, because its answer could not be
//! told from the earlier one's; with `cql_stream_reuse wait` it waits here instead, until the
//! earlier answer is in.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;

use crate::codec::segment::write_segments;
use crate::codec::{Compression, Header};

use super::audit::StreamHasher;
use super::handshake::AuthState;
use super::{Fed, Session};

/// Stream ids with a request the server has not answered yet, with the time (monotonic
/// µs) each went on, and whether it holds a request in flight of the identity's caps
/// (the top bit).
#[derive(Default)]
pub(super) struct Streams(HashMap<i16, u64, BuildHasherDefault<StreamHasher>>);

/// The bit of a stream's entry that says it holds requests in flight of the caps.
const HOLDS: u64 = 1 << 63;

impl Streams {
    pub(super) fn contains(&self, stream: i16) -> bool {
        !self.0.is_empty() && self.0.contains_key(&stream)
    }

    pub(super) fn insert(&mut self, stream: i16, at_us: u64, holds: bool) {
        let holds = if holds { HOLDS } else { 0 };
        self.0.insert(stream, (at_us & !HOLDS) | holds);
    }

    /// The request on `stream` is answered: when it went on and whether it held requests
    /// in flight, if one was in flight.
    pub(super) fn remove(&mut self, stream: i16) -> Option<(u64, bool)> {
        if self.0.is_empty() {
            return None;
        }
        let entry = self.0.remove(&stream)?;
        Some((entry & !HOLDS, entry & HOLDS != 0))
    }

    /// Whether a request other than the one on `stream` is in flight.
    pub(super) fn others_than(&self, stream: i16) -> bool {
        self.0.len() > usize::from(self.0.contains_key(&stream))
    }
}

/// Stream ids of the client messages waiting here, with how many wait on each
/// (`cql_stream_reuse wait` lets several wait on one stream).
#[derive(Default)]
pub(super) struct Waiting(HashMap<i16, u32, BuildHasherDefault<StreamHasher>>);

impl Waiting {
    pub(super) fn contains(&self, stream: i16) -> bool {
        !self.0.is_empty() && self.0.contains_key(&stream)
    }

    pub(super) fn insert(&mut self, stream: i16) {
        *self.0.entry(stream).or_insert(0) += 1;
    }

    pub(super) fn remove(&mut self, stream: i16) {
        if let Some(n) = self.0.get_mut(&stream) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.0.remove(&stream);
            }
        }
    }
}

/// A client message that waits behind a keyspace change.
pub(super) struct Parked {
    pub header: Header,
    /// The body as the session reads it (decompressed in v4).
    pub body: Vec<u8>,
    /// v3/v4: the frame as it came on the wire, forwarded as it is if allowed. Empty in v5,
    /// where kept envelopes are framed into new segments.
    pub raw: Vec<u8>,
    /// v5: the segment it came in has been verified (CRC32); v3/v4 frames are whole.
    pub sealed: bool,
    /// Already decided and allowed: a keyspace change that waits for the requests before it.
    pub decided: bool,
}

impl Parked {
    fn size(&self) -> usize {
        self.body.len() + self.raw.len() + core::mem::size_of::<Parked>()
    }
}

/// Client messages waiting, oldest first, and the bytes they hold.
#[derive(Default)]
pub(super) struct Queue {
    entries: VecDeque<Parked>,
    bytes: usize,
}

impl Queue {
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(super) fn push_back(&mut self, parked: Parked) {
        self.bytes = self.bytes.saturating_add(parked.size());
        self.entries.push_back(parked);
    }

    pub(super) fn push_front(&mut self, parked: Parked) {
        self.bytes = self.bytes.saturating_add(parked.size());
        self.entries.push_front(parked);
    }

    pub(super) fn front(&self) -> Option<&Parked> {
        self.entries.front()
    }

    pub(super) fn pop_front(&mut self) -> Option<Parked> {
        let parked = self.entries.pop_front()?;
        self.bytes = self.bytes.saturating_sub(parked.size());
        Some(parked)
    }

    /// The v5 segment run the waiting envelopes came in was verified.
    pub(super) fn seal(&mut self) {
        for parked in self.entries.iter_mut().rev() {
            if parked.sealed {
                break;
            }
            parked.sealed = true;
        }
    }
}

/// What becomes of a whole client message.
pub(super) enum Keep {
    Forward,
    /// Not forwarded: the proxy answered it, or it is not for the server.
    Drop,
    /// Held in the queue: it follows a keyspace change (`decided: false`), or it is an
    /// allowed keyspace change that waits for the requests before it (`decided: true`).
    Park {
        decided: bool,
    },
}

impl Session {
    /// A whole client message: decided now, or parked behind a keyspace change.
    pub(super) fn on_client_frame(
        &mut self,
        header: &Header,
        body: &[u8],
        now: u64,
    ) -> Result<Keep, Fed> {
        if self.auth == AuthState::Authenticated
            && (self.keyspace_change.is_some()
                || !self.parked.is_empty()
                || self.streams.contains(header.stream))
        {
            self.parked_streams.insert(header.stream);
            return Ok(Keep::Park { decided: false });
        }
        self.decide_frame(header, body, now)
    }

    /// Decides a client message; an allowed request is in flight from now on.
    fn decide_frame(&mut self, header: &Header, body: &[u8], now: u64) -> Result<Keep, Fed> {
        let authenticated = self.auth == AuthState::Authenticated;
        if !self.on_request(header, body, now)? {
            return Ok(Keep::Drop);
        }
        let holds = core::mem::take(&mut self.holds_request);
        if authenticated {
            self.streams
                .insert(header.stream, self.clock.monotonic_us, holds);
            if self.keyspace_change == Some(header.stream)
                && self.streams.others_than(header.stream)
            {
                return Ok(Keep::Park { decided: true });
            }
        }
        Ok(Keep::Forward)
    }

    /// Holds the client message just read (in `body`, its bytes in the client unit).
    pub(super) fn park(&mut self, header: Header, body: Vec<u8>, decided: bool) {
        let in_segments = self.client.in_segments();
        let raw = if in_segments {
            // The segment run goes on without it (re-framed); it gets segments of its own.
            self.client_unit
                .frame_done(&header, &body, false, true, &mut self.out.to_server);
            Vec::new()
        } else {
            self.client_unit.take_frame()
        };
        self.parked.push_back(Parked {
            header,
            body,
            raw,
            sealed: !in_segments,
            decided,
        });
    }

    /// Sends on, in order, what waited and may go now: a keyspace change once nothing
    /// else is in flight, the messages behind it once Cassandra answered it.
    pub(super) fn release_parked(&mut self, now: u64) -> Result<(), Fed> {
        let in_segments = self.client.in_segments();
        // v5: the envelopes that go on, framed into segments at the end.
        let mut envelopes = Vec::new();
        let result = loop {
            let Some(front) = self.parked.front() else {
                break Ok(());
            };
            if !front.sealed {
                break Ok(());
            }
            let waits = if front.decided {
                self.streams.others_than(front.header.stream)
            } else {
                // Behind a keyspace change, or (`cql_stream_reuse wait`) on a stream whose
                // earlier request is not answered yet.
                self.keyspace_change.is_some() || self.streams.contains(front.header.stream)
            };
            if waits {
                break Ok(());
            }
            let Some(parked) = self.parked.pop_front() else {
                break Ok(());
            };
            let keep = if parked.decided {
                Ok(Keep::Forward)
            } else {
                self.parked_streams.remove(parked.header.stream);
                self.decide_frame(&parked.header, &parked.body, now)
            };
            match keep {
                Ok(Keep::Forward) if in_segments => {
                    envelopes.extend_from_slice(&parked.header.to_bytes());
                    envelopes.extend_from_slice(&parked.body);
                }
                Ok(Keep::Forward) => self.out.to_server.extend_from_slice(&parked.raw),
                Ok(Keep::Drop) => {}
                Ok(Keep::Park { .. }) => {
                    self.parked.push_front(Parked {
                        decided: true,
                        ..parked
                    });
                }
                Err(refusal) => break Err(refusal),
            }
            if self.closing {
                break Ok(());
            }
        };
        if !envelopes.is_empty() {
            let lz4 = self.compression == Compression::Lz4;
            write_segments(&envelopes, lz4, &mut self.out.to_server);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_in_flight_until_removed() {
        let mut s = Streams::default();
        assert!(!s.contains(3));
        s.insert(3, 100, false);
        assert!(s.contains(3));
        assert!(!s.others_than(3));
        assert!(s.others_than(4));
        s.insert(4, 200, true);
        assert!(s.others_than(3));
        assert_eq!(s.remove(3), Some((100, false)), "when it went on");
        assert_eq!(
            s.remove(4),
            Some((200, true)),
            "and whether it holds requests of the caps"
        );
        s.insert(4, 200, false);
        assert_eq!(s.remove(3), None);
        assert!(!s.contains(3));
        assert!(s.others_than(3));
    }
}
