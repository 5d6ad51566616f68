//! Tokens for the handshakes: read from a file, or signed here (each one distinct, by its
//! `jti`), so that a cold run never presents a token the proxy has validated before.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

pub struct MintSpec {
    pub key_pem: Vec<u8>,
    pub kid: Option<String>,
    pub alg: Algorithm,
    /// Claims every token has (iss, aud, sub, groups...); `jti`, `iat`, `exp` are added.
    pub claims: Map<String, Value>,
    pub ttl: u64,
}

impl MintSpec {
    pub fn from_key_file(
        path: &str,
        kid: Option<String>,
        alg: &str,
        claims: Map<String, Value>,
        ttl: u64,
    ) -> Result<MintSpec, String> {
        let key_pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let alg: Algorithm = alg
            .parse()
            .map_err(|_| format!("--mint-alg {alg:?} is not known"))?;
        let kid = kid.or_else(|| {
            let name = Path::new(path).file_name()?.to_str()?;
            Some(name.strip_suffix(".key").unwrap_or(name).to_string())
        });
        let spec = MintSpec {
            key_pem,
            kid,
            alg,
            claims,
            ttl,
        };
        spec.encoding_key()?;
        Ok(spec)
    }

    fn encoding_key(&self) -> Result<EncodingKey, String> {
        match self.alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&self.key_pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&self.key_pem),
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                return Err("HMAC tokens are not minted here".into())
            }
            _ => EncodingKey::from_rsa_pem(&self.key_pem),
        }
        .map_err(|e| format!("the key does not sign {:?}: {e}", self.alg))
    }

    /// `count` distinct tokens, signed on every core; `prefix` makes their `jti`s unique
    /// across calls.
    pub fn mint(&self, count: usize, prefix: &str) -> Result<Vec<String>, String> {
        let key = self.encoding_key()?;
        let mut header = Header::new(self.alg);
        header.kid = self.kid.clone();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(count.max(1));
        let per = count.div_ceil(threads);
        let parts: Vec<Result<Vec<String>, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (key, header) = (&key, &header);
                    s.spawn(move || {
                        let lo = t * per;
                        let hi = ((t + 1) * per).min(count);
                        let mut claims = self.claims.clone();
                        claims.insert("iat".into(), Value::from(now));
                        claims.insert("exp".into(), Value::from(now + self.ttl));
                        (lo..hi)
                            .map(|i| {
                                claims.insert("jti".into(), Value::from(format!("{prefix}-{i}")));
                                jsonwebtoken::encode(header, &claims, key)
                                    .map_err(|e| format!("cannot sign: {e}"))
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("a signing thread died".into()))
                })
                .collect()
        });
        let mut out = Vec::with_capacity(count);
        for p in parts {
            out.extend(p?);
        }
        Ok(out)
    }
}

/// One token per non-empty line.
pub fn read_tokens(path: &str) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}
