//! Which way bytes flow: what every part of the codec (headers, readers, errors) is told.

/// Which way bytes flow on a proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Requests, from the client (driver) to Cassandra.
    ClientToServer,
    /// Responses and events, from Cassandra to the client.
    ServerToClient,
}

impl Direction {
    /// Whether envelopes flowing this way have the response bit set.
    pub fn is_response(self) -> bool {
        matches!(self, Direction::ServerToClient)
    }
}
