//! Identity benchmarks: what a client's login costs the proxy. A full RS256 and ES256 token
//! validation (signature and claims), and a validation answered by the token cache, as in a
//! reconnect storm. Keys are made at run time (the `openssl` command for RSA, rcgen for EC).

use std::path::PathBuf;
use std::process::Command;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ngx_stream_cql_module::identity::{JwtSettings, JwtValidator, TokenCache};
use serde_json::json;

const NOW: u64 = 1_800_000_000;

/// A folder for the public key files, removed at the end.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A validator for `public_pem` with issuer and audience checks, and a token it accepts.
fn setup(
    dir: &Dir,
    name: &str,
    public_pem: &str,
    alg: Algorithm,
    key: EncodingKey,
) -> (JwtValidator, String) {
    let path = dir.0.join(name);
    std::fs::write(&path, public_pem).unwrap();
    let validator = JwtValidator::load(&JwtSettings {
        keys: vec![path],
        issuers: vec!["https://idp.example.com/realms/ops".into()],
        audiences: vec!["cassandra".into()],
        leeway: 30,
        roles_claim: Some("realm_access.roles".into()),
        ..JwtSettings::default()
    })
    .unwrap();
    let claims = json!({
        "sub": "5f0c2a9e-6d1b-4c55-9a51-7f3c1f4a2b10",
        "preferred_username": "alice",
        "email": "alice@example.com",
        "iss": "https://idp.example.com/realms/ops",
        "aud": ["cassandra", "account"],
        "exp": NOW + 300,
        "iat": NOW - 60,
        "realm_access": {"roles": ["analyst", "etl", "offline_access"]},
    });
    let mut header = Header::new(alg);
    header.kid = Some("bench".into());
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    (validator, token)
}

fn benches(c: &mut Criterion) {
    let dir = Dir(std::env::temp_dir().join(format!("cql-identity-bench-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();

    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("the openssl command makes the RSA key");
    let rsa_private = String::from_utf8(out.stdout).unwrap();
    let rsa_public = rcgen::KeyPair::from_pem(&rsa_private)
        .unwrap()
        .public_key_pem();
    let (rs256, rs256_token) = setup(
        &dir,
        "rsa.pem",
        &rsa_public,
        Algorithm::RS256,
        EncodingKey::from_rsa_pem(rsa_private.as_bytes()).unwrap(),
    );

    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let (es256, es256_token) = setup(
        &dir,
        "ec.pem",
        &ec.public_key_pem(),
        Algorithm::ES256,
        EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).unwrap(),
    );

    let mut g = c.benchmark_group("token");
    g.bench_function("rs256_validate", |b| {
        b.iter(|| black_box(rs256.validate(black_box(&rs256_token), NOW).unwrap()))
    });
    g.bench_function("es256_validate", |b| {
        b.iter(|| black_box(es256.validate(black_box(&es256_token), NOW).unwrap()))
    });
    let mut cache = TokenCache::new(4096);
    cache.validate(&rs256, 1, &rs256_token, NOW).unwrap();
    g.bench_function("cached_validate", |b| {
        b.iter(|| {
            black_box(
                cache
                    .validate(&rs256, 1, black_box(&rs256_token), NOW)
                    .unwrap(),
            )
        })
    });
    g.finish();
}

criterion_group!(identity, benches);
criterion_main!(identity);
