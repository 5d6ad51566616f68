//! Base64url without padding (RFC 4648 §5), as JWTs and JWKs use it. Strict: only the url-safe
//! alphabet, no padding, no whitespace, and unused trailing bits must be zero, so that one
//! value has exactly one spelling.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Decodes `text`, or `None` if it is not canonical unpadded base64url (the `base64` crate's
/// URL-safe engine without padding refuses padding and non-zero trailing bits by default).
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Encodes `bytes` as unpadded base64url (tests build tokens and JWKs with it).
#[cfg(test)]
pub(crate) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
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
