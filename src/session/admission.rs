//! What a client frame may be, checked on its header before its body is read (the
//! handshake's order, stream ids, the AUTH_RESPONSE cap), and how a refusal ends the
//! connection: an ERROR on the offending stream, then the end once it reached the client.

use crate::codec::messages::codes;
use crate::codec::{encode, CodecError, Direction, Header, Opcode};

use super::handshake::AuthState;
use super::{Fault, Fed, Session, StreamReuse, Violation};

impl Session {
    /// Checks a header before its body is read: what the handshake allows, and the cap on
    /// AUTH_RESPONSE.
    pub(super) fn check_header(&mut self, from: Direction, header: &Header) -> Result<(), Fed> {
        if from != Direction::ClientToServer {
            return Ok(());
        }
        if let Some(state) = self.auth.refuses(header.opcode) {
            let message = format!("Unexpected message {} {state}", header.opcode.name());
            return Err(self.refuse_message(
                header.stream,
                codes::PROTOCOL_ERROR,
                &message,
                Fault::Unexpected {
                    opcode: header.opcode,
                    state,
                },
            ));
        }
        if self.auth == AuthState::Authenticated && !header.is_response {
            if header.stream < 0 {
                let message = format!(
                    "Invalid stream id {}: requests use stream ids from 0",
                    header.stream
                );
                return Err(self.refuse_message(
                    header.stream,
                    codes::PROTOCOL_ERROR,
                    &message,
                    Fault::NegativeStream {
                        opcode: header.opcode,
                        stream: header.stream,
                    },
                ));
            }
            let reused =
                self.streams.contains(header.stream) || self.parked_streams.contains(header.stream);
            if reused && self.config.stream_reuse == StreamReuse::Refuse {
                let message = format!(
                    "Stream {} already has a request in flight: wait for its answer before reusing the stream id",
                    header.stream
                );
                return Err(self.refuse_message(
                    header.stream,
                    codes::PROTOCOL_ERROR,
                    &message,
                    Fault::StreamInFlight {
                        opcode: header.opcode,
                        stream: header.stream,
                    },
                ));
            }
        }
        let max = self.config.limits.max_auth_response_size;
        if header.opcode == Opcode::AuthResponse && header.length > max {
            return Err(self.refuse_message(
                header.stream,
                codes::PROTOCOL_ERROR,
                "AUTH_RESPONSE too large",
                Fault::AuthResponseTooLarge {
                    length: header.length,
                    max,
                },
            ));
        }
        Ok(())
    }

    /// A client's first frame in a version the proxy does not speak is answered as
    /// Cassandra does: ERROR 0x000A on stream 0 naming the supported versions.
    pub(super) fn refuse(&mut self, violation: Violation) -> Fed {
        match violation.fault {
            Fault::Codec(CodecError::UnsupportedVersion { version })
                if violation.from == Direction::ClientToServer && self.version.is_none() =>
            {
                encode::write_unsupported_version(version, &mut self.out.to_client);
                self.closing = true;
                Fed::Refuse(violation)
            }
            _ => Fed::Close(violation),
        }
    }

    /// Refuses a client message with an error on its stream, then ends the connection. The
    /// error waits, like every answer of the proxy's own, for the server's stream toward the
    /// client to be between frames.
    pub(super) fn refuse_message(
        &mut self,
        stream: i16,
        code: i32,
        message: &str,
        fault: Fault,
    ) -> Fed {
        self.answer_client(|f, out| f.write_error(stream, code, message, out));
        self.end_after_answer(fault)
    }

    /// Ends the connection once what is queued for the client (an answer that says why)
    /// has reached it.
    pub(super) fn end_after_answer(&mut self, fault: Fault) -> Fed {
        self.closing = true;
        Fed::Refuse(Violation {
            from: Direction::ClientToServer,
            fault,
        })
    }
}
