//! Time, identifiers and small helpers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);
static SEED: AtomicU64 = AtomicU64::new(0);

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A non-cryptographic pseudo-random number (splitmix64).
pub fn rand_u64() -> u64 {
    if SEED.load(Ordering::Relaxed) == 0 {
        let _ = SEED.compare_exchange(
            0,
            (now_nanos() as u64) | 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    let mut z = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random (version 4) UUID.
pub fn uuid_v4() -> [u8; 16] {
    let mut u = [0u8; 16];
    u[..8].copy_from_slice(&rand_u64().to_be_bytes());
    u[8..].copy_from_slice(&rand_u64().to_be_bytes());
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

/// A time-based (version 1) UUID for the current time, unique within the process.
pub fn timeuuid_now() -> [u8; 16] {
    // 100 ns intervals since 1582-10-15
    let base = (now_nanos() / 100) as u64 + 0x01B2_1DD2_1381_4000;
    let ts = base + (COUNTER.fetch_add(1, Ordering::Relaxed) % 10_000);
    let mut u = [0u8; 16];
    u[0..4].copy_from_slice(&((ts & 0xFFFF_FFFF) as u32).to_be_bytes());
    u[4..6].copy_from_slice(&(((ts >> 32) & 0xFFFF) as u16).to_be_bytes());
    u[6..8].copy_from_slice(&((((ts >> 48) & 0x0FFF) as u16) | 0x1000).to_be_bytes());
    let node = rand_u64();
    u[8..16].copy_from_slice(&node.to_be_bytes());
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

pub fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut ctx = md5::Context::new();
    for p in parts {
        ctx.consume(p);
    }
    ctx.compute().0
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
