//! Addresses, the node map, and what the proxy makes up for its instances: their place on the
//! token ring and their host ids.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sha2::{Digest, Sha256};

/// The partitioner whose tokens are 0..2^127 (every other partitioner is given Murmur3 tokens).
pub(crate) const RANDOM_PARTITIONER: &[u8] = b"org.apache.cassandra.dht.RandomPartitioner";

/// `addr` with an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as a dual-stack listener reports
/// IPv4 clients) turned into IPv4, and no flow info or scope id.
pub(crate) fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Whether `a` and `b` name the same address and port.
pub(crate) fn same(a: SocketAddr, b: SocketAddr) -> bool {
    canonical(a) == canonical(b)
}

/// An address cell's bytes (4 or 16) as an address, canonical.
pub(crate) fn ip_of(cell: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(cell) {
        Some(IpAddr::V4(Ipv4Addr::from(v4)))
    } else if let Ok(v6) = <[u8; 16]>::try_from(cell) {
        Some(IpAddr::V6(Ipv6Addr::from(v6)).to_canonical())
    } else {
        None
    }
}

/// A node as the error log names it: `10.0.1.7:9042`, `[fd00::7]:9042`, or the address alone
/// when the port is unknown.
pub(crate) fn describe(ip: IpAddr, port: Option<u16>) -> String {
    match port {
        Some(p) => SocketAddr::new(ip, p).to_string(),
        None => ip.to_string(),
    }
}

/// The proxy address that fronts the node at `ip` (and `port`, when known): the entry whose
/// node address is exactly that, else the only entry with that address. Several entries with
/// the address and none with the port: ambiguous, `None`.
pub(crate) fn lookup(
    map: &[(SocketAddr, SocketAddr)],
    ip: IpAddr,
    port: Option<u16>,
) -> Option<SocketAddr> {
    let ip = ip.to_canonical();
    if let Some(p) = port {
        let node = SocketAddr::new(ip, p);
        if let Some((_, proxy)) = map.iter().find(|(n, _)| same(*n, node)) {
            return Some(*proxy);
        }
    }
    let mut by_ip = map.iter().filter(|(n, _)| n.ip().to_canonical() == ip);
    match (by_ip.next(), by_ip.next()) {
        (Some((_, proxy)), None) => Some(*proxy),
        _ => None,
    }
}

/// A host id for the proxy instance at `addr`, stable across restarts and workers: the first
/// 16 bytes of SHA-256("cql-proxy host " + address), marked as a version 4 (random) UUID of
/// the RFC 4122 variant.
pub fn host_id(addr: SocketAddr) -> [u8; 16] {
    let digest = Sha256::digest(format!("cql-proxy host {}", canonical(addr)).as_bytes());
    let mut id = [0u8; 16];
    for (d, s) in id.iter_mut().zip(digest.iter()) {
        *d = *s;
    }
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

/// The `index`-th of `n` tokens evenly spaced over the partitioner's range, in decimal:
/// Murmur3 `-2^63 + index * floor(2^64 / n)`, RandomPartitioner (`random`)
/// `index * floor(2^127 / n)`. `n` of 0 is taken as 1.
pub fn token(index: usize, n: usize, random: bool) -> String {
    let n = n.max(1) as u128;
    let i = index as u128 % n;
    if random {
        (i * ((1u128 << 127) / n)).to_string()
    } else {
        // i * step < 2^64: fits i128, and so does the sum.
        let step = (1u128 << 64) / n;
        ((i * step) as i128 - (1i128 << 63)).to_string()
    }
}

/// The proxy instances as a ring: the listed ones without repeats, and the instance the client
/// is served by (`me`) added at the end when the list does not name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ring {
    members: Vec<SocketAddr>,
    /// The place of the instance serving the client.
    me: usize,
    me_addr: SocketAddr,
}

impl Ring {
    pub fn new(instances: &[SocketAddr], me: SocketAddr) -> Ring {
        let mut members: Vec<SocketAddr> = Vec::with_capacity(instances.len() + 1);
        for a in instances {
            if !members.iter().any(|m| same(*m, *a)) {
                members.push(canonical(*a));
            }
        }
        let me_addr = canonical(me);
        let me = match members.iter().position(|m| *m == me_addr) {
            Some(i) => i,
            None => {
                members.push(me_addr);
                members.len() - 1
            }
        };
        Ring {
            members,
            me,
            me_addr,
        }
    }

    /// The instance serving the client, with its place on the ring.
    pub fn me(&self) -> (usize, SocketAddr) {
        (self.me, self.me_addr)
    }

    /// Every other instance, with its place on the ring.
    pub fn others(&self) -> impl Iterator<Item = (usize, SocketAddr)> + '_ {
        let me = self.me;
        self.members
            .iter()
            .copied()
            .enumerate()
            .filter(move |(i, _)| *i != me)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }
}
