//! What the session and token targets share: an HMAC-keyed validator and tokens for it.
use std::sync::OnceLock;

use ngx_stream_cql_module::identity::{JwtSettings, JwtValidator};

pub const SECRET: &[u8] = b"fuzzing secret of 32 bytes or more, not a real one";
pub const NOW: u64 = 1_800_000_000;

pub fn validator() -> JwtValidator {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    let path = PATH.get_or_init(|| {
        let p = std::env::temp_dir().join(format!("cql-fuzz-secret-{}", std::process::id()));
        std::fs::write(&p, SECRET).expect("write the fuzzing secret");
        p
    });
    JwtValidator::load(&JwtSettings {
        secret: Some(path.clone()),
        algorithms: vec!["HS256".into()],
        roles_claim: Some("groups".into()),
        ..JwtSettings::default()
    })
    .expect("validator")
}

pub fn token(claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .expect("token")
}
