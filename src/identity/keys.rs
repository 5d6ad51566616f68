//! Verification keys from files, read once at configuration time: JWKS documents (several
//! keys told apart by `kid`), PEM public keys or certificates (RSA, EC P-256/P-384, Ed25519),
//! and the HMAC secret. Every error names the file and says what is wrong with it, so that
//! `nginx -t` can report it.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::pem::Pem;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::RSAPublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::base64url;

/// The kind of a key, which decides the algorithms it can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyType {
    Rsa,
    P256,
    P384,
    Ed25519,
    Hmac,
}

impl KeyType {
    /// Every algorithm a key of this kind can verify.
    pub(crate) fn algorithms(self) -> &'static [Algorithm] {
        use Algorithm::*;
        match self {
            KeyType::Rsa => &[RS256, RS384, RS512, PS256, PS384, PS512],
            KeyType::P256 => &[ES256],
            KeyType::P384 => &[ES384],
            KeyType::Ed25519 => &[EdDSA],
            KeyType::Hmac => &[HS256, HS384, HS512],
        }
    }

    fn name(self) -> &'static str {
        match self {
            KeyType::Rsa => "an RSA key",
            KeyType::P256 => "a P-256 key",
            KeyType::P384 => "a P-384 key",
            KeyType::Ed25519 => "an Ed25519 key",
            KeyType::Hmac => "an HMAC secret",
        }
    }
}

/// The kind of key an algorithm needs.
pub(crate) fn key_type_of(alg: Algorithm) -> KeyType {
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => KeyType::Rsa,
        ES256 => KeyType::P256,
        ES384 => KeyType::P384,
        EdDSA => KeyType::Ed25519,
        HS256 | HS384 | HS512 => KeyType::Hmac,
    }
}

/// One key a token's signature may be checked with.
#[derive(Clone)]
pub(crate) struct VerifyKey {
    /// The JWK's `kid`; PEM keys and the secret have none.
    pub(crate) kid: Option<String>,
    /// The algorithms this key is used for: those its kind can verify, narrowed by the JWK's
    /// `alg` and by the configured list.
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) key: DecodingKey,
}

impl VerifyKey {
    fn new(kid: Option<String>, key_type: KeyType, key: DecodingKey) -> VerifyKey {
        VerifyKey {
            kid,
            algorithms: key_type.algorithms().to_vec(),
            key,
        }
    }
}

/// The shortest RSA modulus accepted (and the shortest `ring` verifies with).
const RSA_MIN_BITS: usize = 2048;
/// The longest RSA modulus `ring` verifies with.
const RSA_MAX_BITS: usize = 8192;
/// The shortest HMAC secret accepted: RFC 7518 §3.2 asks for at least the hash size, 32 bytes
/// for HS256 (48 for HS384, 64 for HS512).
pub(crate) const HMAC_MIN_BYTES: usize = 32;

/// The reason in an I/O error, without Rust's " (os error N)" suffix.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Reads the keys in `path` (a JWKS document, a single JWK, or PEM public keys or
/// certificates, told apart by content) into `keys`. JWKS entries that cannot sign (`use`
/// other than `sig`, symmetric `oct` keys, algorithms or curves not supported) are skipped
/// with a line in `notes`; a file that yields no usable key is an error.
pub(crate) fn load_key_file(
    path: &Path,
    keys: &mut Vec<VerifyKey>,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let shown = path.display();
    let data = std::fs::read(path)
        .map_err(|e| format!("cannot read JWT keys \"{shown}\": {}", io_reason(&e)))?;
    let not_keys =
        |why: &str| format!("\"{shown}\" is not a JWKS document or PEM public key: {why}");
    let text = std::str::from_utf8(&data).map_err(|_| not_keys("it is not text"))?;
    let before = keys.len();
    if text.trim_start().starts_with('{') {
        let doc: Value = serde_json::from_str(text).map_err(|e| not_keys(&e.to_string()))?;
        let entries: Vec<&Value> = match (doc.get("keys"), doc.get("kty")) {
            (Some(Value::Array(list)), _) => list.iter().collect(),
            (Some(_), _) => return Err(not_keys("\"keys\" is not an array")),
            (None, Some(_)) => vec![&doc],
            (None, None) => return Err(not_keys("a JSON object without \"keys\"")),
        };
        for (i, entry) in entries.into_iter().enumerate() {
            match jwk(entry, i + 1) {
                Ok(Jwk::Key(key)) => keys.push(key),
                Ok(Jwk::Skipped(why)) => notes.push(format!("\"{shown}\": {why}")),
                Err(e) => return Err(format!("\"{shown}\": {e}")),
            }
        }
    } else if text.contains("-----BEGIN ") {
        for block in Pem::iter_from_buffer(&data) {
            let block = block.map_err(|e| not_keys(&e.to_string()))?;
            let key = pem_block(&block).map_err(|e| format!("\"{shown}\": {e}"))?;
            keys.push(key);
        }
    } else {
        return Err(not_keys("it is neither JSON nor PEM"));
    }
    if keys.len() == before {
        return Err(format!(
            "\"{shown}\" holds no key that can verify token signatures"
        ));
    }
    Ok(())
}

/// Reads the HMAC secret in `path`: the file's bytes, less one trailing line ending. A PEM
/// block is refused (a public key is not a secret: using one would let anyone sign tokens),
/// and so is a secret shorter than 32 bytes. The key is used for HS256, and for HS384 and
/// HS512 when it is at least 48 and 64 bytes long.
pub(crate) fn load_secret(path: &Path) -> Result<VerifyKey, String> {
    let shown = path.display();
    let mut data = std::fs::read(path)
        .map_err(|e| format!("cannot read JWT secret \"{shown}\": {}", io_reason(&e)))?;
    if data.ends_with(b"\n") {
        data.pop();
        if data.ends_with(b"\r") {
            data.pop();
        }
    }
    if data.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(format!(
            "\"{shown}\" holds a PEM block, not an HMAC secret: a public key must never be used as a secret"
        ));
    }
    if data.len() < HMAC_MIN_BYTES {
        return Err(format!(
            "the HMAC secret in \"{shown}\" is {} bytes; at least {HMAC_MIN_BYTES} are required",
            data.len()
        ));
    }
    let mut key = VerifyKey::new(None, KeyType::Hmac, DecodingKey::from_secret(&data));
    key.algorithms.retain(|&a| data.len() >= hmac_min_bytes(a));
    Ok(key)
}

/// The shortest secret an HMAC algorithm is used with (RFC 7518 §3.2: the hash size).
pub(crate) fn hmac_min_bytes(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => HMAC_MIN_BYTES,
    }
}

/// One entry of a JWKS document.
enum Jwk {
    Key(VerifyKey),
    /// Not a signature verification key this validator uses, and why.
    Skipped(String),
}

/// Reads one JWK. `index` (from 1) names keys without `kid` in messages.
fn jwk(v: &Value, index: usize) -> Result<Jwk, String> {
    let kid = match v.get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(format!("key #{index}: \"kid\" is not a string")),
    };
    let name = match &kid {
        Some(k) => format!("key \"{k}\""),
        None => format!("key #{index}"),
    };
    let field = |f: &str| -> Result<Vec<u8>, String> {
        let s = v
            .get(f)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{name}: \"{f}\" is missing or not a string"))?;
        base64url::decode(s).ok_or_else(|| format!("{name}: \"{f}\" is not base64url"))
    };
    if let Some(u) = v.get("use") {
        if u.as_str() != Some("sig") {
            return Ok(Jwk::Skipped(format!(
                "{name} skipped: its use is not \"sig\""
            )));
        }
    }
    if let Some(ops) = v.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o.as_str() == Some("verify")));
        if !verifies {
            return Ok(Jwk::Skipped(format!(
                "{name} skipped: its key_ops lack \"verify\""
            )));
        }
    }
    let kty = v
        .get("kty")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{name}: \"kty\" is missing or not a string"))?;
    let crv = v.get("crv").and_then(Value::as_str).unwrap_or("");
    let (key_type, key) = match (kty, crv) {
        ("RSA", _) => rsa_key(&field("n")?, &field("e")?).map_err(|e| format!("{name}: {e}"))?,
        ("EC", "P-256" | "P-384") => {
            let (key_type, size) = if crv == "P-256" {
                (KeyType::P256, 32)
            } else {
                (KeyType::P384, 48)
            };
            let (x, y) = (field("x")?, field("y")?);
            if x.len() != size || y.len() != size {
                return Err(format!(
                    "{name}: \"x\" and \"y\" must be {size} bytes for {crv}"
                ));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (key_type, DecodingKey::from_ec_der(&point))
        }
        ("OKP", "Ed25519") => {
            let x = field("x")?;
            if x.len() != 32 {
                return Err(format!("{name}: \"x\" must be 32 bytes for Ed25519"));
            }
            (KeyType::Ed25519, DecodingKey::from_ed_der(&x))
        }
        ("EC" | "OKP", _) => {
            return Ok(Jwk::Skipped(format!(
                "{name} skipped: curve \"{crv}\" is not supported (P-256, P-384 and Ed25519 are)"
            )))
        }
        ("oct", _) => {
            return Ok(Jwk::Skipped(format!(
                "{name} skipped: symmetric keys are taken only from the secret file"
            )))
        }
        _ => {
            return Ok(Jwk::Skipped(format!(
                "{name} skipped: key type \"{kty}\" is not supported"
            )))
        }
    };
    let mut key = VerifyKey::new(kid, key_type, key);
    if let Some(alg) = v.get("alg") {
        let alg = alg
            .as_str()
            .ok_or_else(|| format!("{name}: \"alg\" is not a string"))?;
        match alg.parse::<Algorithm>() {
            Ok(a) if key_type_of(a) == key_type => key.algorithms = vec![a],
            Ok(a) => {
                return Err(format!(
                    "{name}: algorithm {a:?} does not fit {}",
                    key_type.name()
                ))
            }
            Err(_) => {
                return Ok(Jwk::Skipped(format!(
                    "{name} skipped: algorithm \"{alg}\" is not a supported signature algorithm"
                )))
            }
        }
    }
    Ok(Jwk::Key(key))
}

/// A key from one PEM block: a public key (SPKI or PKCS#1 RSA) or a certificate's key.
fn pem_block(block: &Pem) -> Result<VerifyKey, String> {
    let (key_type, key) = match block.label.as_str() {
        "PUBLIC KEY" => {
            let (_, spki) = SubjectPublicKeyInfo::from_der(&block.contents)
                .map_err(|e| format!("PUBLIC KEY block is not valid: {e}"))?;
            spki_key(&spki)?
        }
        "RSA PUBLIC KEY" => {
            let (_, rsa) = RSAPublicKey::from_der(&block.contents)
                .map_err(|e| format!("RSA PUBLIC KEY block is not valid: {e}"))?;
            rsa_key(rsa.modulus, rsa.exponent)?
        }
        "CERTIFICATE" => {
            let (_, cert) = x509_parser::parse_x509_certificate(&block.contents)
                .map_err(|e| format!("CERTIFICATE block is not valid: {e}"))?;
            spki_key(cert.public_key())?
        }
        label if label.contains("PRIVATE KEY") => {
            return Err(format!(
                "it holds a private key ({label}); configure the public key (openssl pkey -pubout)"
            ))
        }
        label => return Err(format!("PEM block \"{label}\" is not a public key")),
    };
    Ok(VerifyKey::new(None, key_type, key))
}

/// The key in a SubjectPublicKeyInfo.
fn spki_key(spki: &SubjectPublicKeyInfo) -> Result<(KeyType, DecodingKey), String> {
    let oid = &spki.algorithm.algorithm;
    let data: &[u8] = &spki.subject_public_key.data;
    if *oid == OID_PKCS1_RSAENCRYPTION {
        let (_, rsa) = RSAPublicKey::from_der(data)
            .map_err(|e| format!("RSA public key is not valid: {e}"))?;
        rsa_key(rsa.modulus, rsa.exponent)
    } else if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| x509_parser::der_parser::oid::Oid::try_from(p).ok());
        let (key_type, size) = match curve {
            Some(c) if c == OID_EC_P256 => (KeyType::P256, 32),
            Some(c) if c == OID_NIST_EC_P384 => (KeyType::P384, 48),
            _ => return Err("EC curve is not supported (P-256 and P-384 are)".into()),
        };
        if data.len() != 1 + 2 * size || data[0] != 4 {
            return Err("EC public key is not an uncompressed point of its curve".into());
        }
        Ok((key_type, DecodingKey::from_ec_der(data)))
    } else if *oid == OID_SIG_ED25519 {
        if data.len() != 32 {
            return Err("Ed25519 public key is not 32 bytes".into());
        }
        Ok((KeyType::Ed25519, DecodingKey::from_ed_der(data)))
    } else {
        Err(format!(
            "public key algorithm {oid} is not supported (RSA, EC P-256/P-384 and Ed25519 are)"
        ))
    }
}

/// An RSA key from its big-endian modulus and exponent (leading zero bytes allowed), with a
/// modulus of 2048 to 8192 bits.
fn rsa_key(n: &[u8], e: &[u8]) -> Result<(KeyType, DecodingKey), String> {
    let strip = |b: &[u8]| -> Vec<u8> {
        let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
        b[first..].to_vec()
    };
    let (n, e) = (strip(n), strip(e));
    let bits = match n.first() {
        Some(&top) => n.len() * 8 - top.leading_zeros() as usize,
        None => 0,
    };
    if bits < RSA_MIN_BITS {
        return Err(format!(
            "RSA key of {bits} bits; at least {RSA_MIN_BITS} are required"
        ));
    }
    if bits > RSA_MAX_BITS {
        return Err(format!(
            "RSA key of {bits} bits; at most {RSA_MAX_BITS} are supported"
        ));
    }
    if e.is_empty() {
        return Err("RSA exponent is zero".into());
    }
    Ok((KeyType::Rsa, DecodingKey::from_rsa_raw_components(&n, &e)))
}
