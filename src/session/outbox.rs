//! What leaves the session: one queue that the I/O layer polls after every call
//! ([`Session::poll_output`](super::Session::poll_output)).

use std::collections::VecDeque;

use crate::codec::Direction;

use super::Violation;

/// Error-log lines kept between two polls; more are dropped (a topology answer that names
/// hundreds of unknown nodes says so in the first few lines).
const MAX_NOTICES: usize = 16;

/// One thing that leaves the session, in the order the I/O layer should act on them.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// The polled buffer holds bytes to send toward this direction's peer (toward the
    /// server for [`Direction::ClientToServer`]).
    Send(Direction),
    /// The polled buffer holds audit lines, each ending in `\n`.
    Audit,
    /// A line for the error log (rows a topology rewrite left out, answers it could not
    /// rewrite).
    Notice(String),
    /// End the connection once the client has been sent what was queued for it, which ends
    /// with the refusal; a refusal waits for the server's response in progress to end
    /// ([`Session::is_drained`](super::Session::is_drained)), and until then the session
    /// still takes the server's bytes and gives what goes on toward the client.
    Refuse(Violation),
    /// End the connection now; the reason goes to the error log.
    Close(Violation),
}

/// The session's outgoing queue.
#[derive(Default)]
pub(super) struct Outbox {
    /// Bytes toward the server, replacing client bytes, and the proxy's own requests.
    pub(super) to_server: Vec<u8>,
    /// Bytes toward the client: replaced server bytes, and the proxy's own answers.
    pub(super) to_client: Vec<u8>,
    /// The proxy's answers waiting for the server's stream to reach a frame boundary.
    pub(super) deferred: Vec<u8>,
    notices: VecDeque<String>,
    /// The end of the connection, once queued and until polled.
    end: Option<Output>,
    /// A refusal was queued: a later one changes nothing.
    refused: bool,
}

impl Outbox {
    /// Queues a line for the error log.
    pub(super) fn notice(&mut self, line: String) {
        if self.notices.len() < MAX_NOTICES {
            self.notices.push_back(line);
        }
    }

    /// Queues the end of the connection ([`Output::Refuse`] or [`Output::Close`]). Nothing
    /// more goes toward the server; an immediate close drops what waited for the client
    /// too. The first refusal stands; a close after it still ends the connection at once.
    pub(super) fn end(&mut self, end: Output) {
        match end {
            Output::Refuse(_) if self.refused => return,
            Output::Refuse(_) => self.refused = true,
            Output::Close(_) => {
                self.to_client.clear();
                self.deferred.clear();
            }
            _ => return,
        }
        self.to_server.clear();
        self.end = Some(end);
    }

    /// Bytes waiting toward the client, polled or not yet at a frame boundary.
    pub(super) fn toward_client(&self) -> usize {
        self.deferred.len().saturating_add(self.to_client.len())
    }

    /// The next output: bytes toward the server, then toward the client, then `lines` of
    /// the audit trail, error-log lines, and last the end of the connection. Bytes are
    /// swapped into `buf`, which must be empty.
    #[inline]
    pub(super) fn poll(
        &mut self,
        buf: &mut Vec<u8>,
        lines: Option<&mut Vec<u8>>,
    ) -> Option<Output> {
        if !self.to_server.is_empty() {
            core::mem::swap(buf, &mut self.to_server);
            return Some(Output::Send(Direction::ClientToServer));
        }
        if !self.to_client.is_empty() {
            core::mem::swap(buf, &mut self.to_client);
            return Some(Output::Send(Direction::ServerToClient));
        }
        if let Some(lines) = lines.filter(|lines| !lines.is_empty()) {
            core::mem::swap(buf, lines);
            return Some(Output::Audit);
        }
        if !self.notices.is_empty() {
            return self.notices.pop_front().map(Output::Notice);
        }
        if self.end.is_some() {
            return self.end.take();
        }
        None
    }
}
