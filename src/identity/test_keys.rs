//! Keys, key files and tokens made at test time: no key is checked in. RSA keys come from the
//! `openssl` command (two per test run, shared), the others from `rcgen`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use x509_parser::pem::parse_x509_pem;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::{PublicKey, RSAPublicKey};
use x509_parser::x509::SubjectPublicKeyInfo;

use super::base64url::encode;

/// The time tests validate at.
pub(crate) const NOW: u64 = 1_800_000_000;
pub(crate) const ISSUER: &str = "https://idp.example.com/realms/ops";
pub(crate) const AUDIENCE: &str = "cassandra";

/// A key pair in PEM: PKCS#8 private key and SPKI public key.
pub(crate) struct TestKey {
    pub(crate) alg: Algorithm,
    pub(crate) private_pem: String,
    pub(crate) public_pem: String,
}

impl TestKey {
    fn encoding_key(&self) -> EncodingKey {
        let pem = self.private_pem.as_bytes();
        match self.alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem).unwrap(),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem).unwrap(),
            _ => EncodingKey::from_rsa_pem(pem).unwrap(),
        }
    }

    /// A token signed with this key and its algorithm.
    pub(crate) fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        self.sign_as(self.alg, kid, claims)
    }

    /// A token signed with this key and `alg` (e.g. PS256 with an RSA key).
    pub(crate) fn sign_as(&self, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &self.encoding_key()).unwrap()
    }

    /// The public key as a JWK with `kid` (and `alg` when given).
    pub(crate) fn jwk(&self, kid: &str, alg: Option<&str>) -> Value {
        let (_, pem) = parse_x509_pem(self.public_pem.as_bytes()).unwrap();
        let (_, spki) = SubjectPublicKeyInfo::from_der(&pem.contents).unwrap();
        let mut jwk = match spki.parsed().unwrap() {
            PublicKey::RSA(RSAPublicKey { modulus, exponent }) => {
                let strip = |b: &[u8]| b[b.iter().position(|&x| x != 0).unwrap()..].to_vec();
                json!({"kty": "RSA", "n": encode(&strip(modulus)), "e": encode(&strip(exponent))})
            }
            PublicKey::EC(point) => {
                let p = point.data();
                let half = (p.len() - 1) / 2;
                let crv = if half == 32 { "P-256" } else { "P-384" };
                json!({"kty": "EC", "crv": crv, "x": encode(&p[1..1 + half]), "y": encode(&p[1 + half..])})
            }
            PublicKey::Unknown(x) => json!({"kty": "OKP", "crv": "Ed25519", "x": encode(x)}),
            other => panic!("unexpected key {other:?}"),
        };
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        if let Some(alg) = alg {
            jwk["alg"] = json!(alg);
        }
        jwk
    }
}

/// One of two 2048-bit RSA keys (`i` is 0 or 1), made once per test run.
pub(crate) fn rsa(i: usize) -> &'static TestKey {
    static KEYS: [OnceLock<TestKey>; 2] = [OnceLock::new(), OnceLock::new()];
    KEYS[i].get_or_init(|| {
        let out = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .expect("the openssl command makes the RSA test keys");
        assert!(out.status.success(), "openssl genpkey failed");
        let private_pem = String::from_utf8(out.stdout).unwrap();
        let public_pem = rcgen::KeyPair::from_pem(&private_pem)
            .unwrap()
            .public_key_pem();
        TestKey {
            alg: Algorithm::RS256,
            private_pem,
            public_pem,
        }
    })
}

/// A fresh EC (ES256, ES384) or Ed25519 (EdDSA) key.
pub(crate) fn fresh(alg: Algorithm) -> TestKey {
    let rcgen_alg = match alg {
        Algorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Algorithm::ES384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        Algorithm::EdDSA => &rcgen::PKCS_ED25519,
        other => panic!("no fresh {other:?} keys"),
    };
    let pair = rcgen::KeyPair::generate_for(rcgen_alg).unwrap();
    TestKey {
        alg,
        private_pem: pair.serialize_pem(),
        public_pem: pair.public_key_pem(),
    }
}

/// A token signed with an HMAC `secret`.
pub(crate) fn hmac_token(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// A token with any header and payload bytes, signed with an HMAC `secret` under `alg`.
pub(crate) fn raw_hmac_token(
    alg: Algorithm,
    secret: &[u8],
    header: &Value,
    payload: &[u8],
) -> String {
    let message = format!(
        "{}.{}",
        encode(header.to_string().as_bytes()),
        encode(payload)
    );
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &EncodingKey::from_secret(secret), alg)
            .unwrap();
    format!("{message}.{signature}")
}

/// An unsigned token (`alg: none`), as RFC 7519 §6 spells it: empty signature.
pub(crate) fn unsigned_token(claims: &Value) -> String {
    format!(
        "{}.{}.",
        encode(json!({"alg": "none", "typ": "JWT"}).to_string().as_bytes()),
        encode(claims.to_string().as_bytes())
    )
}

/// Claims that every default rule accepts at [`NOW`].
pub(crate) fn claims() -> Value {
    json!({
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": NOW + 600,
        "iat": NOW - 10,
        "email": "alice@example.com",
    })
}

/// A folder for key files, removed when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "cql-identity-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    /// Writes `contents` to `name` in the folder and returns its path.
    pub(crate) fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
