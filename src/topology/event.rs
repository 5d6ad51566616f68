//! The rewriting of TOPOLOGY_CHANGE and STATUS_CHANGE events.

use std::net::IpAddr;

use super::ring::{describe, ip_of, lookup};
use super::Topology;
use crate::codec::messages::EventBody;
use crate::codec::primitives::write;
use crate::codec::CodecError;

/// What became of an EVENT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventRewrite {
    /// Goes on as it came (SCHEMA_CHANGE; anything under Topology::Off).
    Keep,
    /// Goes on with the body written to `out`.
    Replaced,
    /// Not passed on: the node it names ("10.0.1.7:9042") has no proxy address.
    Drop { node: String },
}

/// How the error log names the node of an event (its port as sent, even out of range).
fn node_name(ip: IpAddr, port: i32) -> String {
    match u16::try_from(port) {
        Ok(p) => describe(ip, Some(p)),
        Err(_) if ip.is_ipv6() => format!("[{ip}]:{port}"),
        Err(_) => format!("{ip}:{port}"),
    }
}

/// Rewrites an EVENT body (prefixes stripped) of `version`.
///
/// [`Topology::Nodes`]: a TOPOLOGY_CHANGE or STATUS_CHANGE whose node is mapped names the
/// proxy address that fronts it ([`EventRewrite::Replaced`]); an unmapped one is dropped.
/// [`Topology::Proxy`]: every such event is dropped, its node is behind the proxy. A
/// SCHEMA_CHANGE goes on as it came; under [`Topology::Off`] everything does, unread. The
/// body is validated first: on error `out` is as it was.
pub fn rewrite_event(
    topology: &Topology,
    version: u8,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<EventRewrite, CodecError> {
    if *topology == Topology::Off {
        return Ok(EventRewrite::Keep);
    }
    if !(3..=5).contains(&version) {
        return Err(CodecError::UnsupportedVersion { version });
    }
    let (event_type, change, address, port) = match EventBody::decode(body)? {
        EventBody::SchemaChange(_) => return Ok(EventRewrite::Keep),
        EventBody::TopologyChange {
            change,
            address,
            port,
        } => ("TOPOLOGY_CHANGE", change, address, port),
        EventBody::StatusChange {
            change,
            address,
            port,
        } => ("STATUS_CHANGE", change, address, port),
    };
    let ip = ip_of(address).ok_or(CodecError::Malformed("EVENT: address"))?;
    let drop = || EventRewrite::Drop {
        node: node_name(ip, port),
    };
    let map = match topology {
        Topology::Nodes { map } => map,
        Topology::Proxy { .. } | Topology::Off => return Ok(drop()),
    };
    let Some(proxy) = lookup(map, ip, u16::try_from(port).ok()) else {
        return Ok(drop());
    };
    write::string(out, event_type);
    write::string(out, change);
    match proxy.ip().to_canonical() {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(16);
            out.extend_from_slice(&v6.octets());
        }
    }
    write::int(out, i32::from(proxy.port()));
    Ok(EventRewrite::Replaced)
}
