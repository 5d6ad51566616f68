//! The answers that tell a driver where the nodes are: held, rewritten, passed on.
//!
//! Once a client sent a SELECT on `system.local`, `system.peers` or `system.peers_v2`, or
//! registered for topology or status events, the session watches the server's stream frame
//! by frame at its boundaries. Those answers and events are held whole and rewritten by
//! [`crate::topology`] so that every address in them is a proxy address; every other frame
//! goes on as it comes (copied while the window is open, in place otherwise). In v5 a
//! segment holding a rewritten envelope is re-framed.

use super::{AuthState, Pending, Session};
use crate::codec::messages::{codes, strip_prefixes, ErrorBody, ErrorExtra};
use crate::codec::{Direction, Header, Opcode};
use crate::topology::{self, EventRewrite, Topology};

/// What becomes of a held topology answer or event.
pub(super) enum Rewrite {
    /// Goes on as it came.
    Keep,
    /// Goes on as this message instead.
    Replace {
        opcode: Opcode,
        flags: u8,
        body: Vec<u8>,
    },
    /// Not passed on.
    Drop,
}

impl Session {
    /// Whether the server's stream is watched frame by frame: a topology answer is due, or
    /// the client registered for topology events.
    pub(super) fn topology_window(&self) -> bool {
        self.auth == AuthState::Authenticated
            && self.config.topology != Topology::Off
            && (self.topology_events
                || self
                    .pending
                    .iter()
                    .any(|(_, p)| matches!(p, Pending::Topology { .. })))
    }

    /// Whether held server frames are decided one by one (after the handshake) rather than
    /// as handshake answers.
    pub(super) fn watches_frames(&self) -> bool {
        !self.auth.holds_server()
    }

    /// Whether a server frame is one the rewriter reads.
    fn is_topology_frame(&self, header: &Header) -> bool {
        if self.config.topology == Topology::Off {
            return false;
        }
        match header.opcode {
            Opcode::Event => self.topology_events,
            Opcode::Result => self
                .pending
                .iter()
                .any(|(s, p)| *s == header.stream && matches!(p, Pending::Topology { .. })),
            _ => false,
        }
    }

    /// The header of a server frame while watching frame by frame: a topology frame is held
    /// whole; in v3/v4 any other goes on as it comes; in v5 it stays in its segment, which
    /// goes on when it ends.
    pub(super) fn on_watched_header(&mut self, header: &Header) {
        let from = Direction::ServerToClient;
        self.on_header(from, header, false);
        if self.is_topology_frame(header) {
            self.server_rewrite = true;
            self.server.capture_body();
        } else if self.server.in_segments() {
            // Kept whole, in case its segment must be re-framed.
            self.server.capture_body();
        } else {
            self.server_passing = true;
            self.server_unit.pass_to(&mut self.out.to_client);
        }
    }

    /// A whole server frame while watching frame by frame.
    pub(super) fn on_watched_response(&mut self, header: &Header, captured: bool) {
        let body = core::mem::take(&mut self.scratch);
        let in_segments = self.server.in_segments();
        if self.server_passing {
            self.server_passing = false;
            self.on_response(header, captured.then_some(&body[..]));
        } else if self.server_rewrite {
            self.server_rewrite = false;
            let rewrite = self.rewrite_topology(header, &body);
            self.on_response(header, Some(&body));
            let framing = self.client_framing();
            match rewrite {
                Rewrite::Keep => self.server_unit.frame_done(
                    header,
                    &body,
                    true,
                    in_segments,
                    &mut self.out.to_client,
                ),
                Rewrite::Drop => self.server_unit.frame_done(
                    header,
                    &body,
                    false,
                    in_segments,
                    &mut self.out.to_client,
                ),
                Rewrite::Replace {
                    opcode,
                    flags,
                    body: new,
                } => self.server_unit.frame_replaced(
                    header,
                    opcode,
                    flags,
                    &new,
                    &framing,
                    &mut self.out.to_client,
                ),
            }
        } else {
            self.on_response(header, captured.then_some(&body[..]));
            self.server_unit
                .frame_done(header, &body, true, in_segments, &mut self.out.to_client);
        }
        self.scratch = body;
        self.after_frame(Direction::ServerToClient, header);
    }

    /// Rewrites a held topology answer or event.
    fn rewrite_topology(&mut self, header: &Header, body: &[u8]) -> Rewrite {
        let Ok((_, rest)) = strip_prefixes(header, body) else {
            return self.unreadable(header, "its prefixes cannot be read");
        };
        let prefix = body.get(..body.len() - rest.len()).unwrap_or_default();
        let mut out = Vec::with_capacity(body.len() + 64);
        out.extend_from_slice(prefix);
        match header.opcode {
            Opcode::Event => {
                match topology::rewrite_event(&self.config.topology, header.version, rest, &mut out)
                {
                    Ok(EventRewrite::Keep) => Rewrite::Keep,
                    Ok(EventRewrite::Replaced) => Rewrite::Replace {
                        opcode: Opcode::Event,
                        flags: header.flags.0,
                        body: out,
                    },
                    Ok(EventRewrite::Drop { node }) => {
                        if matches!(self.config.topology, Topology::Nodes { .. }) {
                            self.notice(format!(
                                "cql: topology: an event about node {node} was not passed on: no \
                                 cql_topology_node maps it"
                            ));
                        }
                        Rewrite::Drop
                    }
                    Err(error) => {
                        self.notice(format!(
                            "cql: topology: an event from the upstream was not passed on: {error}"
                        ));
                        Rewrite::Drop
                    }
                }
            }
            _ => {
                let Some(Pending::Topology { table, prepared }) = self.take_pending(header.stream)
                else {
                    return Rewrite::Keep;
                };
                // Only rows name nodes (an ERROR is not a RESULT and passes as it is).
                if rest.get(..4) != Some(&[0, 0, 0, 2][..]) {
                    return Rewrite::Keep;
                }
                let columns = prepared.as_ref().and_then(|p| p.columns.as_ref());
                match topology::rewrite_rows(
                    &self.config.topology,
                    table,
                    self.local,
                    header.version,
                    rest,
                    columns,
                    &mut self.topology_memo,
                    &mut out,
                ) {
                    Ok(outcome) => {
                        for node in &outcome.left_out {
                            self.notice(format!(
                                "cql: topology: left out the {} row of node {node}: no \
                                 cql_topology_node maps it",
                                table.name()
                            ));
                        }
                        Rewrite::Replace {
                            opcode: Opcode::Result,
                            flags: header.flags.0,
                            body: out,
                        }
                    }
                    Err(error) => self.unreadable(header, &format!("{}: {error}", table.name())),
                }
            }
        }
    }

    /// A topology answer the proxy cannot rewrite does not reach the client as it is: the
    /// client gets a server error on its stream instead, and the error log says why.
    fn unreadable(&mut self, header: &Header, why: &str) -> Rewrite {
        self.notice(format!(
            "cql: topology: the upstream's answer on stream {} was not passed on, it cannot be \
             rewritten: {why}",
            header.stream
        ));
        let mut body = Vec::new();
        ErrorBody {
            code: codes::SERVER_ERROR,
            message: "The proxy could not rewrite the cluster topology in this answer",
            extra: ErrorExtra::None,
        }
        .encode(header.version, &mut body);
        Rewrite::Replace {
            opcode: Opcode::Error,
            flags: 0,
            body,
        }
    }

    fn notice(&mut self, line: String) {
        self.out.notice(line);
    }
}
