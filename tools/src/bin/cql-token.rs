//! `cql-token`: signing keys with their JWKS, test tokens (including the attack tokens the
//! module must refuse), and a CA with client and server certificates for mTLS, for tests,
//! demos and recipes. Not an identity provider: tokens for production come from the real one.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Map, Value};

const HELP: &str = "\
cql-token: keys, tokens and certificates for testing ngx_stream_cql_module

USAGE
  cql-token keygen --kid KID --out DIR [--alg RS256|ES256|ES384|EdDSA] [--bits 2048]
      Writes DIR/KID.key (private key, PKCS#8 PEM), DIR/KID.pub.pem (public key) and adds
      the public key to DIR/jwks.json (created if missing). Key rotation: keygen a second
      KID into the same DIR. Default algorithm ES256.

  cql-token mint [--key DIR/KID.key] [--kid KID | --no-kid] [--alg ALG] [--secret-file F]
                 [--sub S] [--iss URL] [--aud A]... [--ttl SECS] [--exp-in SECS] [--no-exp]
                 [--nbf-in SECS] [--claim NAME=VALUE]... [--claim-json JSON]... [--now UNIX]
      Prints a signed JWT on stdout. The algorithm follows the key (RSA: RS256, P-256: ES256,
      P-384: ES384, Ed25519: EdDSA) unless --alg says otherwise (PS256, RS512, ...). The kid
      defaults to the key file's name without .key. exp is now + --ttl (default 3600), or
      now + --exp-in (negative for an expired token); iat is now. A repeated --claim makes an
      array; --claim-json merges a JSON object into the claims.
      Attack tokens the module must refuse:
        --alg none                         an unsigned token
        --alg HS256 --secret-file F.pem    HMAC with a public key as the secret
      (the secret file's bytes less one trailing line ending, as the module reads it).

  cql-token ca --out DIR [--cn NAME] [--o ORG] [--days 3650]
      Writes a CA certificate DIR/ca.pem and its key DIR/ca.key (ECDSA P-256).

  cql-token cert --ca DIR [--cn NAME] --out PREFIX [--o ORG] [--ou UNIT]... [--san-email E]...
                 [--san-dns D]... [--san-uri U]... [--server] [--days 365]
      Writes PREFIX.pem and PREFIX.key signed by the CA in DIR: a client certificate, or
      with --server a server certificate for localhost and 127.0.0.1. At most two --ou.
      Without --cn (nor --o, --ou) the subject is empty and a SAN names the holder, as in
      a service mesh's workload certificates: --san-uri spiffe://cluster.local/ns/NS/sa/SA.

  cql-token --help
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("cql-token: {e}");
        std::process::exit(2);
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let (command, rest) = match args.split_first() {
        None => {
            print!("{HELP}");
            return Ok(());
        }
        Some((c, rest)) => (c.as_str(), rest),
    };
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        print!("{HELP}");
        return Ok(());
    }
    match command {
        "-h" | "--help" | "help" => {
            print!("{HELP}");
            Ok(())
        }
        "keygen" => keygen(&Opts::parse(rest, &["alg", "kid", "out", "bits"], &[])?),
        "mint" => mint(&Opts::parse(
            rest,
            &[
                "key",
                "kid",
                "alg",
                "secret-file",
                "sub",
                "iss",
                "aud",
                "ttl",
                "exp-in",
                "nbf-in",
                "claim",
                "claim-json",
                "now",
            ],
            &["no-kid", "no-exp"],
        )?),
        "ca" => ca(&Opts::parse(rest, &["out", "cn", "o", "days"], &[])?),
        "cert" => cert(&Opts::parse(
            rest,
            &[
                "ca",
                "cn",
                "out",
                "o",
                "ou",
                "san-email",
                "san-dns",
                "san-uri",
                "days",
            ],
            &["server"],
        )?),
        other => Err(format!("unknown command \"{other}\"; see cql-token --help")),
    }
}

/// Command-line options: `--name value`, `--name=value` and `--flag`.
struct Opts {
    values: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Opts {
    fn parse(args: &[String], with_value: &[&str], flags: &[&str]) -> Result<Opts, String> {
        let mut opts = Opts {
            values: Vec::new(),
            flags: Vec::new(),
        };
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            let Some(name) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument \"{arg}\""));
            };
            let (name, inline) = match name.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (name, None),
            };
            if with_value.contains(&name) {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        i += 1;
                        args.get(i)
                            .cloned()
                            .ok_or_else(|| format!("--{name} needs a value"))?
                    }
                };
                opts.values.push((name.to_string(), value));
            } else if flags.contains(&name) && inline.is_none() {
                opts.flags.push(name.to_string());
            } else {
                return Err(format!("unknown option --{name}; see cql-token --help"));
            }
            i += 1;
        }
        Ok(opts)
    }

    /// The last value of `--name`.
    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("--{name} is required"))
    }

    /// Every value of `--name`, in order.
    fn all(&self, name: &str) -> Vec<&str> {
        self.values
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    /// `--name` as a number, or `default`.
    fn number<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name} {v:?} is not a valid number")),
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes `contents` to `path`, readable by the owner only (private keys).
fn write_private(path: &Path, contents: &str) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// `keygen`: a key pair and its JWK, added to the folder's JWKS.
fn keygen(o: &Opts) -> Result<(), String> {
    let kid = o.required("kid")?;
    if kid.is_empty()
        || !kid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || kid.starts_with('.')
    {
        return Err(format!(
            "--kid {kid:?}: use letters, digits, '-', '_' and '.' (it names the key file)"
        ));
    }
    let dir = PathBuf::from(o.required("out")?);
    let alg = o.get("alg").unwrap_or("ES256");
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let key_path = dir.join(format!("{kid}.key"));
    if key_path.exists() {
        return Err(format!("{} exists already", key_path.display()));
    }
    let jwks_path = dir.join("jwks.json");
    let mut jwks = if jwks_path.exists() {
        let doc: Value = serde_json::from_str(&read(&jwks_path)?)
            .map_err(|e| format!("{} is not JSON: {e}", jwks_path.display()))?;
        if !doc.get("keys").is_some_and(Value::is_array) {
            return Err(format!("{} has no \"keys\" array", jwks_path.display()));
        }
        doc
    } else {
        json!({ "keys": [] })
    };
    let keys = jwks["keys"].as_array_mut().ok_or("jwks.json has no keys")?;
    if keys.iter().any(|k| k["kid"] == kid) {
        return Err(format!(
            "{} has a key \"{kid}\" already",
            jwks_path.display()
        ));
    }

    let (private_pem, public_pem, mut jwk) = match alg {
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => {
            let bits = o.number("bits", 2048usize)?;
            if !(2048..=8192).contains(&bits) {
                return Err("--bits must be between 2048 and 8192".into());
            }
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits)
                .map_err(|e| format!("RSA key generation failed: {e}"))?;
            let private = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| format!("cannot encode the RSA key: {e}"))?;
            let public = key
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| format!("cannot encode the RSA public key: {e}"))?;
            let jwk = json!({
                "kty": "RSA",
                "n": b64(&key.n().to_bytes_be()),
                "e": b64(&key.e().to_bytes_be()),
            });
            (private.to_string(), public, jwk)
        }
        "ES256" | "ES384" | "EdDSA" => {
            let rcgen_alg = match alg {
                "ES256" => &rcgen::PKCS_ECDSA_P256_SHA256,
                "ES384" => &rcgen::PKCS_ECDSA_P384_SHA384,
                _ => &rcgen::PKCS_ED25519,
            };
            let pair = KeyPair::generate_for(rcgen_alg)
                .map_err(|e| format!("key generation failed: {e}"))?;
            let raw = pair.public_key_raw();
            let jwk = if alg == "EdDSA" {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(raw)})
            } else {
                let half = raw.len().saturating_sub(1) / 2;
                let crv = if alg == "ES256" { "P-256" } else { "P-384" };
                json!({
                    "kty": "EC",
                    "crv": crv,
                    "x": b64(&raw[1..1 + half]),
                    "y": b64(&raw[1 + half..]),
                })
            };
            (pair.serialize_pem(), pair.public_key_pem(), jwk)
        }
        other => {
            return Err(format!(
                "--alg {other}: keygen makes RS256, PS256 (RSA), ES256, ES384 and EdDSA keys"
            ))
        }
    };
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    jwk["alg"] = json!(alg);
    keys.push(jwk);
    let count = keys.len();

    write_private(&key_path, &private_pem)?;
    let pub_path = dir.join(format!("{kid}.pub.pem"));
    write(&pub_path, &public_pem)?;
    let text = serde_json::to_string_pretty(&jwks).map_err(|e| e.to_string())?;
    write(&jwks_path, &format!("{text}\n"))?;
    println!(
        "{} (private), {}, {} ({count} key{})",
        key_path.display(),
        pub_path.display(),
        jwks_path.display(),
        if count == 1 { "" } else { "s" }
    );
    Ok(())
}

/// The algorithm a private key signs with by default.
fn default_alg(pair: &KeyPair) -> Result<Algorithm, String> {
    let alg = pair.algorithm();
    if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        Ok(Algorithm::ES256)
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        Ok(Algorithm::ES384)
    } else if alg == &rcgen::PKCS_ED25519 {
        Ok(Algorithm::EdDSA)
    } else if alg == &rcgen::PKCS_RSA_SHA256 {
        Ok(Algorithm::RS256)
    } else {
        Err("the key is neither RSA, EC P-256/P-384 nor Ed25519".into())
    }
}

/// The claims of `mint`, from the options.
fn claims(o: &Opts) -> Result<Map<String, Value>, String> {
    let now = o.number("now", now())?;
    let at = |offset: i64| -> u64 {
        if offset < 0 {
            now.saturating_sub(offset.unsigned_abs())
        } else {
            now.saturating_add(offset as u64)
        }
    };
    let mut c = Map::new();
    for name in ["sub", "iss"] {
        if let Some(v) = o.get(name) {
            c.insert(name.into(), json!(v));
        }
    }
    match o.all("aud").as_slice() {
        [] => {}
        [one] => {
            c.insert("aud".into(), json!(one));
        }
        many => {
            c.insert("aud".into(), json!(many));
        }
    }
    c.insert("iat".into(), json!(now));
    if !o.flag("no-exp") {
        let exp = match o.get("exp-in") {
            Some(_) => at(o.number("exp-in", 0i64)?),
            None => at(o.number("ttl", 3600i64)?),
        };
        c.insert("exp".into(), json!(exp));
    }
    if o.get("nbf-in").is_some() {
        c.insert("nbf".into(), json!(at(o.number("nbf-in", 0i64)?)));
    }
    let mut repeated: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for claim in o.all("claim") {
        let (name, value) = claim
            .split_once('=')
            .ok_or_else(|| format!("--claim {claim:?}: write NAME=VALUE"))?;
        repeated.entry(name).or_default().push(value);
    }
    for (name, values) in repeated {
        let v = match values.as_slice() {
            [one] => json!(one),
            many => json!(many),
        };
        c.insert(name.into(), v);
    }
    for text in o.all("claim-json") {
        let Value::Object(extra) =
            serde_json::from_str(text).map_err(|e| format!("--claim-json is not JSON: {e}"))?
        else {
            return Err("--claim-json must be a JSON object".into());
        };
        c.extend(extra);
    }
    Ok(c)
}

/// `mint`: a token on stdout.
fn mint(o: &Opts) -> Result<(), String> {
    let claims = Value::Object(claims(o)?);
    let kid = if o.flag("no-kid") {
        None
    } else if let Some(k) = o.get("kid") {
        Some(k.to_string())
    } else {
        o.get("key").and_then(|k| {
            let name = Path::new(k).file_name()?.to_str()?;
            Some(name.strip_suffix(".key").unwrap_or(name).to_string())
        })
    };
    let alg = o.get("alg");
    let token = if alg == Some("none") {
        let mut header = json!({"alg": "none", "typ": "JWT"});
        if let Some(k) = &kid {
            header["kid"] = json!(k);
        }
        format!(
            "{}.{}.",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        )
    } else if let Some(secret_file) = o.get("secret-file") {
        let alg: Algorithm = alg
            .unwrap_or("HS256")
            .parse()
            .map_err(|_| format!("--alg {:?} is not known", alg.unwrap_or("")))?;
        if !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err("--secret-file signs with HS256, HS384 or HS512".into());
        }
        let mut secret =
            fs::read(secret_file).map_err(|e| format!("cannot read {secret_file}: {e}"))?;
        if secret.ends_with(b"\n") {
            secret.pop();
            if secret.ends_with(b"\r") {
                secret.pop();
            }
        }
        sign(alg, kid, &claims, &EncodingKey::from_secret(&secret))?
    } else {
        let key_file = o
            .get("key")
            .ok_or("--key (or --secret-file, or --alg none) is required")?;
        let pem = read(Path::new(key_file))?;
        let pair = KeyPair::from_pem(&pem)
            .map_err(|e| format!("{key_file} is not a PKCS#8 private key: {e}"))?;
        let alg = match alg {
            Some(a) => a
                .parse::<Algorithm>()
                .map_err(|_| format!("--alg {a:?} is not known"))?,
            None => default_alg(&pair)?,
        };
        let pem = pem.as_bytes();
        let key = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                return Err("HMAC algorithms sign with --secret-file".into())
            }
            _ => EncodingKey::from_rsa_pem(pem),
        }
        .map_err(|e| format!("{key_file} does not sign {alg:?}: {e}"))?;
        sign(alg, kid, &claims, &key)?
    };
    println!("{token}");
    Ok(())
}

fn sign(
    alg: Algorithm,
    kid: Option<String>,
    claims: &Value,
    key: &EncodingKey,
) -> Result<String, String> {
    let mut header = Header::new(alg);
    header.kid = kid;
    jsonwebtoken::encode(&header, claims, key).map_err(|e| format!("cannot sign: {e}"))
}

/// A validity window from an hour ago (clock skew) to `days` from now.
fn validity(params: &mut CertificateParams, o: &Opts, default_days: i64) -> Result<(), String> {
    let days = o.number("days", default_days)?;
    if !(1..=36500).contains(&days) {
        return Err("--days must be between 1 and 36500".into());
    }
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
    Ok(())
}

/// `ca`: a self-signed CA.
fn ca(o: &Opts) -> Result<(), String> {
    let dir = PathBuf::from(o.required("out")?);
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let key = KeyPair::generate().map_err(|e| format!("key generation failed: {e}"))?;
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.distinguished_name = DistinguishedName::new();
    if let Some(org) = o.get("o") {
        p.distinguished_name.push(DnType::OrganizationName, org);
    }
    p.distinguished_name
        .push(DnType::CommonName, o.get("cn").unwrap_or("cql test CA"));
    validity(&mut p, o, 3650)?;
    let cert = p
        .self_signed(&key)
        .map_err(|e| format!("cannot make the CA certificate: {e}"))?;
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    write(&cert_path, &cert.pem())?;
    write_private(&key_path, &key.serialize_pem())?;
    println!("{}, {} (private)", cert_path.display(), key_path.display());
    Ok(())
}

/// `cert`: a client (or server) certificate signed by the CA in `--ca`.
fn cert(o: &Opts) -> Result<(), String> {
    let ca_dir = PathBuf::from(o.required("ca")?);
    let ca_key = KeyPair::from_pem(&read(&ca_dir.join("ca.key"))?)
        .map_err(|e| format!("{}/ca.key is not a private key: {e}", ca_dir.display()))?;
    let issuer = Issuer::from_ca_cert_pem(&read(&ca_dir.join("ca.pem"))?, ca_key)
        .map_err(|e| format!("{}/ca.pem is not a CA certificate: {e}", ca_dir.display()))?;
    let prefix = o.required("out")?;

    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    // Without --cn (nor --o, --ou) the subject is empty, as in a service mesh's workload
    // certificates (X.509-SVIDs): the SAN names the holder and is marked critical (RFC 5280).
    match o.get("cn") {
        Some(cn) => p.distinguished_name.push(DnType::CommonName, cn),
        None if o.all("san-uri").is_empty()
            && o.all("san-email").is_empty()
            && o.all("san-dns").is_empty()
            && !o.flag("server") =>
        {
            return Err(
                "cert needs --cn or a subject alternative name (--san-uri, --san-email, --san-dns)"
                    .into(),
            )
        }
        None => {}
    }
    if let Some(org) = o.get("o") {
        p.distinguished_name.push(DnType::OrganizationName, org);
    }
    // rcgen keeps one value per attribute type: a second OU goes in under its OID spelled
    // as a custom type, which encodes the same attribute.
    match o.all("ou").as_slice() {
        [] => {}
        [one] => p
            .distinguished_name
            .push(DnType::OrganizationalUnitName, *one),
        [first, second] => {
            p.distinguished_name
                .push(DnType::OrganizationalUnitName, *first);
            p.distinguished_name
                .push(DnType::CustomDnType(vec![2, 5, 4, 11]), *second);
        }
        _ => return Err("at most two --ou values are supported".into()),
    }
    let ia5 = |v: &str, what: &str| {
        v.to_string()
            .try_into()
            .map_err(|_| format!("{what} {v:?} is not ASCII"))
    };
    for e in o.all("san-email") {
        p.subject_alt_names
            .push(SanType::Rfc822Name(ia5(e, "--san-email")?));
    }
    for d in o.all("san-dns") {
        p.subject_alt_names
            .push(SanType::DnsName(ia5(d, "--san-dns")?));
    }
    for u in o.all("san-uri") {
        p.subject_alt_names.push(SanType::URI(ia5(u, "--san-uri")?));
    }
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if o.flag("server") {
        p.subject_alt_names
            .push(SanType::DnsName(ia5("localhost", "")?));
        p.subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    } else {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    p.use_authority_key_identifier_extension = true;
    validity(&mut p, o, 365)?;
    let key = KeyPair::generate().map_err(|e| format!("key generation failed: {e}"))?;
    let cert = p
        .signed_by(&key, &issuer)
        .map_err(|e| format!("cannot make the certificate: {e}"))?;
    let (cert_path, key_path) = (
        PathBuf::from(format!("{prefix}.pem")),
        PathBuf::from(format!("{prefix}.key")),
    );
    write(&cert_path, &cert.pem())?;
    write_private(&key_path, &key.serialize_pem())?;
    println!("{}, {} (private)", cert_path.display(), key_path.display());
    Ok(())
}
