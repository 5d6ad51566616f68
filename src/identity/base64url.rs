//! Base64url without padding (RFC 4648 §5), as JWTs and JWKs use it. Strict: only the url-safe
//! alphabet, no padding, no whitespace, and unused trailing bits must be zero, so that one
//! value has exactly one spelling.

/// The value of one base64url character, or `None` for any other byte.
fn value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

/// Decodes `text`, or `None` if it is not canonical unpadded base64url.
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3 + 2);
    let mut chunks = bytes.chunks_exact(4);
    for chunk in chunks.by_ref() {
        let mut n = 0u32;
        for &c in chunk {
            n = (n << 6) | value(c)?;
        }
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    let rest = chunks.remainder();
    let mut n = 0u32;
    for &c in rest {
        n = (n << 6) | value(c)?;
    }
    match rest.len() {
        0 => {}
        // 12 bits: one byte and 4 unused bits.
        2 => {
            if n & 0xF != 0 {
                return None;
            }
            out.push((n >> 4) as u8);
        }
        // 18 bits: two bytes and 2 unused bits.
        3 => {
            if n & 0x3 != 0 {
                return None;
            }
            out.extend_from_slice(&[(n >> 10) as u8, (n >> 2) as u8]);
        }
        _ => return None,
    }
    Some(out)
}

/// Encodes `bytes` as unpadded base64url (tests build tokens and JWKs with it).
#[cfg(test)]
pub(crate) fn encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};

    #[test]
    fn rfc4648_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn url_safe_alphabet_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let coded = encode(&all);
        assert!(!coded.contains('+') && !coded.contains('/'));
        assert_eq!(decode(&coded).unwrap(), all);
    }

    #[test]
    fn refuses_what_is_not_canonical() {
        for bad in [
            "Zg==", "Zm9v+A", "Zm9v/A", "Zm9 v", "Z", "Zh", "Zm9", "Zm9vY", "é",
        ] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
