//! `cql-token` end to end: keys and tokens it makes are accepted (or, for the attack tokens,
//! refused) by the module's own validator, and its certificates carry the claims asked for.

use std::path::{Path, PathBuf};
use std::process::Command;

use ngx_stream_cql_module::identity::{
    identity_from_pem, JwtSettings, JwtValidator, Source, TokenError,
};
use serde_json::Value;

const NOW: u64 = 1_800_000_000;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let path =
            std::env::temp_dir().join(format!("cql-token-test-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs cql-token with `args`; its stdout, or a panic with its stderr.
fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cql-token"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cql-token {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn mint(extra: &[&str]) -> String {
    let mut args = vec![
        "mint",
        "--now",
        "1800000000",
        "--iss",
        "https://idp.example.com/",
        "--aud",
        "cassandra",
    ];
    args.extend_from_slice(extra);
    run(&args).trim().to_string()
}

fn validator(jwks: &Path) -> JwtValidator {
    JwtValidator::load(&JwtSettings {
        keys: vec![jwks.to_path_buf()],
        issuers: vec!["https://idp.example.com/".into()],
        audiences: vec!["cassandra".into()],
        roles_claim: Some("realm_access.roles".into()),
        ..JwtSettings::default()
    })
    .unwrap()
}

#[test]
fn keygen_twice_gives_a_two_key_jwks_and_minted_tokens_validate() {
    let dir = Dir::new("jwks");
    let out = dir.0.to_str().unwrap();
    run(&["keygen", "--alg", "ES256", "--kid", "2025", "--out", out]);
    run(&["keygen", "--alg", "RS256", "--kid", "2026", "--out", out]);
    let jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.0.join("jwks.json")).unwrap()).unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, ["2025", "2026"]);
    assert!(dir.0.join("2026.pub.pem").exists());
    // The same kid twice is refused.
    let again = Command::new(env!("CARGO_BIN_EXE_cql-token"))
        .args(["keygen", "--kid", "2025", "--out", out])
        .output()
        .unwrap();
    assert!(!again.status.success());

    let v = validator(&dir.0.join("jwks.json"));
    for kid in ["2025", "2026"] {
        let token = mint(&[
            "--key",
            &dir.path(&format!("{kid}.key")),
            "--sub",
            "alice",
            "--claim",
            "email=alice@example.com",
            "--claim-json",
            r#"{"realm_access":{"roles":["analyst","etl"]}}"#,
        ]);
        let id = v.validate(&token, NOW).unwrap();
        assert_eq!(id.principal, "alice");
        assert_eq!(id.groups, ["analyst", "etl"]);
        assert_eq!(id.expires_at, Some(NOW + 3600));
        assert!(id
            .attributes
            .contains(&("email".into(), "alice@example.com".into())));
    }
    // PS256 with the RSA key, chosen on the command line, is refused: the JWKs say RS256
    // and ES256.
    let ps = mint(&[
        "--key",
        &dir.path("2026.key"),
        "--alg",
        "PS256",
        "--sub",
        "a",
    ]);
    assert_eq!(
        v.validate(&ps, NOW),
        Err(TokenError::AlgorithmNotAllowed {
            alg: "PS256".into()
        })
    );
}

#[test]
fn time_window_and_attack_tokens_are_refused() {
    let dir = Dir::new("attacks");
    let out = dir.0.to_str().unwrap();
    run(&["keygen", "--alg", "EdDSA", "--kid", "k1", "--out", out]);
    let v = validator(&dir.0.join("jwks.json"));
    let key = dir.path("k1.key");

    let expired = mint(&["--key", &key, "--sub", "a", "--exp-in", "-60"]);
    assert_eq!(v.validate(&expired, NOW), Err(TokenError::Expired));
    let early = mint(&["--key", &key, "--sub", "a", "--nbf-in", "600"]);
    assert_eq!(v.validate(&early, NOW), Err(TokenError::NotYetValid));
    let no_exp = mint(&["--key", &key, "--sub", "a", "--no-exp"]);
    assert_eq!(
        v.validate(&no_exp, NOW),
        Err(TokenError::MissingClaim {
            claim: "exp".into()
        })
    );
    let unknown = mint(&["--key", &key, "--kid", "k9", "--sub", "a"]);
    assert_eq!(
        v.validate(&unknown, NOW),
        Err(TokenError::UnknownKey {
            kid: Some("k9".into())
        })
    );

    let none = mint(&["--alg", "none", "--sub", "a"]);
    assert_eq!(
        v.validate(&none, NOW),
        Err(TokenError::AlgorithmNotAllowed { alg: "none".into() })
    );
    let confused = mint(&[
        "--alg",
        "HS256",
        "--secret-file",
        &dir.path("k1.pub.pem"),
        "--kid",
        "k1",
        "--sub",
        "a",
    ]);
    assert_eq!(
        v.validate(&confused, NOW),
        Err(TokenError::AlgorithmNotAllowed {
            alg: "HS256".into()
        })
    );
}

#[test]
fn ca_and_client_certificate_carry_the_claims() {
    let dir = Dir::new("certs");
    let out = dir.0.to_str().unwrap();
    run(&["ca", "--out", out, "--cn", "Acme Test CA"]);
    run(&[
        "cert",
        "--ca",
        out,
        "--cn",
        "alice",
        "--o",
        "Acme",
        "--ou",
        "data",
        "--ou",
        "ops",
        "--san-email",
        "alice@example.com",
        "--san-uri",
        "spiffe://example.com/ns/etl/sa/loader",
        "--out",
        &dir.path("alice"),
    ]);
    let pem = std::fs::read_to_string(dir.0.join("alice.pem")).unwrap();
    let id = identity_from_pem(&pem).unwrap();
    assert_eq!(id.principal, "alice");
    assert_eq!(id.groups, ["Acme", "data", "ops"]);
    assert_eq!(id.source, Source::Certificate);
    for pair in [
        ("email", "alice@example.com"),
        ("uri", "spiffe://example.com/ns/etl/sa/loader"),
        ("issuer", "CN=Acme Test CA"),
    ] {
        assert!(
            id.attributes.contains(&(pair.0.into(), pair.1.into())),
            "{pair:?} in {:?}",
            id.attributes
        );
    }
    // The certificate chains to the CA (checked by openssl, as NGINX would).
    let verify = Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(dir.0.join("ca.pem"))
        .arg(dir.0.join("alice.pem"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    run(&[
        "cert",
        "--ca",
        out,
        "--cn",
        "localhost",
        "--server",
        "--out",
        &dir.path("server"),
    ]);
    let verify = Command::new("openssl")
        .args(["verify", "-purpose", "sslserver", "-CAfile"])
        .arg(dir.0.join("ca.pem"))
        .arg(dir.0.join("server.pem"))
        .output()
        .unwrap();
    assert!(verify.status.success());
}

#[test]
fn a_certificate_without_cn_is_named_by_its_san_as_a_mesh_workload() {
    let dir = Dir::new("svid");
    let out = dir.0.to_str().unwrap();
    run(&["ca", "--out", out, "--cn", "cluster.local mesh CA"]);
    let spiffe = "spiffe://cluster.local/ns/payments/sa/ledger";
    run(&[
        "cert",
        "--ca",
        out,
        "--san-uri",
        spiffe,
        "--out",
        &dir.path("ledger"),
    ]);
    let pem = std::fs::read_to_string(dir.0.join("ledger.pem")).unwrap();
    let id = identity_from_pem(&pem).unwrap();
    assert_eq!(id.principal, spiffe);
    assert!(id.groups.is_empty());
    assert!(id.attributes.contains(&("uri".into(), spiffe.into())));
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(dir.0.join("ledger.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("X509v3 Subject Alternative Name: critical"),
        "{text}"
    );
    let verify = Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(dir.0.join("ca.pem"))
        .arg(dir.0.join("ledger.pem"))
        .output()
        .unwrap();
    assert!(verify.status.success());
    // Neither a CN nor a SAN: nothing would name the holder.
    let none = Command::new(env!("CARGO_BIN_EXE_cql-token"))
        .args(["cert", "--ca", out, "--out", &dir.path("nobody")])
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("needs --cn or a subject alternative name")
    );
}

#[test]
fn help_and_mistakes() {
    assert!(run(&["--help"]).contains("cql-token keygen"));
    for bad in [
        &["frobnicate"][..],
        &["mint", "--bogus"],
        &["keygen", "--out", "/tmp"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cql-token"))
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("cql-token: "));
    }
}
