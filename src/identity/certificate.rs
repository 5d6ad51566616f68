//! The identity in a TLS client certificate that NGINX has already verified
//! (`ssl_verify_client`, `$ssl_client_raw_cert`): the same kind of claims as a token's.
//! Nothing here checks trust or validity dates; NGINX did.

use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

use super::{Identity, Source};

/// The identity in a PEM client certificate that NGINX already verified
/// (`$ssl_client_raw_cert`):
/// - principal: the subject CN; without one, the first URI SAN (a SPIFFE ID), else the first
///   email SAN, else the first DNS SAN; a certificate with none of these is refused;
/// - groups: the subject's O values, then its OU values;
/// - attributes, in this order: `cn`, `email` (SAN rfc822Name and subject emailAddress),
///   `dns`, `uri`, `o`, `ou`, `serial` (upper-case hex, as NGINX's `$ssl_client_serial`),
///   `issuer` (the issuer DN in RFC 4514 form, as `$ssl_client_i_dn`);
/// - expires_at: notAfter; source: [`Source::Certificate`].
pub fn identity_from_pem(pem: &str) -> Result<Identity, String> {
    if pem.trim().is_empty() {
        return Err("no client certificate".into());
    }
    let (_, block) = parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("client certificate is not PEM: {e}"))?;
    if block.label != "CERTIFICATE" {
        return Err(format!(
            "client certificate PEM block is \"{}\", not CERTIFICATE",
            block.label
        ));
    }
    let cert = block
        .parse_x509()
        .map_err(|e| format!("client certificate is not valid X.509: {e}"))?;
    let subject = cert.subject();

    let mut attributes: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, value: String| attributes.push((name.to_string(), value));
    let cns = texts(subject.iter_common_name())?;
    let orgs = texts(subject.iter_organization())?;
    let units = texts(subject.iter_organizational_unit())?;

    let (mut emails, mut dns, mut uris) = (Vec::new(), Vec::new(), Vec::new());
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("client certificate subjectAltName is not valid: {e}"))?;
    if let Some(san) = san {
        for name in &san.value.general_names {
            match name {
                GeneralName::RFC822Name(s) => emails.push(s.to_string()),
                GeneralName::DNSName(s) => dns.push(s.to_string()),
                GeneralName::URI(s) => uris.push(s.to_string()),
                _ => {}
            }
        }
    }
    emails.extend(texts(subject.iter_email())?);

    let principal = cns
        .first()
        .or(uris.first())
        .or(emails.first())
        .or(dns.first())
        .cloned()
        .ok_or("client certificate has no subject CN and no subject alternative name")?;
    if principal.is_empty() || principal.chars().any(char::is_control) {
        return Err("client certificate principal is empty or holds control characters".into());
    }

    for (name, values) in [
        ("cn", &cns),
        ("email", &emails),
        ("dns", &dns),
        ("uri", &uris),
        ("o", &orgs),
        ("ou", &units),
    ] {
        for v in values {
            add(name, v.clone());
        }
    }
    add("serial", serial_hex(cert.raw_serial()));
    add("issuer", rfc4514(cert.issuer()));

    let mut groups: Vec<String> = Vec::new();
    for g in orgs.into_iter().chain(units) {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    Ok(Identity {
        principal,
        groups,
        attributes,
        expires_at: u64::try_from(cert.validity().not_after.timestamp()).ok(),
        source: Source::Certificate,
    })
}

/// The text of each attribute, or an error naming the attribute that is not text.
fn texts<'a, 'b: 'a>(
    attrs: impl Iterator<Item = &'a AttributeTypeAndValue<'b>>,
) -> Result<Vec<String>, String> {
    attrs
        .map(|a| {
            text(a).ok_or_else(|| {
                format!(
                    "client certificate attribute {} is not text",
                    short_name(&a.attr_type().to_id_string())
                )
            })
        })
        .collect()
}

/// The value of a name attribute as text: the ASCII and UTF-8 string types, BMPString
/// (UTF-16) and TeletexString (read as Latin-1, as most software does).
fn text(attr: &AttributeTypeAndValue) -> Option<String> {
    if let Ok(s) = attr.as_str() {
        return Some(s.to_string());
    }
    let data = attr.attr_value().data;
    match attr.attr_value().tag() {
        Tag::BmpString => {
            if data.len() % 2 != 0 {
                return None;
            }
            let units = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        Tag::TeletexString => Some(data.iter().map(|&b| char::from(b)).collect()),
        _ => None,
    }
}

/// Upper-case hex of a DER serial number without its sign byte, as OpenSSL prints it.
fn serial_hex(raw: &[u8]) -> String {
    let first = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    let digits = &raw[first..];
    if digits.is_empty() {
        return "0".into();
    }
    digits.iter().map(|b| format!("{b:02X}")).collect()
}

/// The short name OpenSSL prints for a name attribute, or its dotted OID.
fn short_name(oid: &str) -> String {
    match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.42" => "GN",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        other => other,
    }
    .to_string()
}

/// A distinguished name in RFC 4514 form: last RDN first, `,` between RDNs, `+` inside one,
/// special characters escaped with `\`; a value that is not text as `#` and hex.
fn rfc4514(name: &X509Name) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter_rdn().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            out.push_str(&short_name(&attr.attr_type().to_id_string()));
            out.push('=');
            match text(attr) {
                Some(v) => escape_into(&v, &mut out),
                None => {
                    out.push('#');
                    for b in attr.attr_value().data {
                        out.push_str(&format!("{b:02X}"));
                    }
                }
            }
        }
    }
    out
}

/// Appends `value` escaped as RFC 4514 §2.4 asks (and control characters as `\XX`).
fn escape_into(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, SanType, SerialNumber,
    };

    /// A CA and a client certificate it signed, with `subject` and `sans`.
    fn client_cert(subject: &[(DnType, &str)], sans: Vec<SanType>) -> String {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name = DistinguishedName::new();
        ca.distinguished_name
            .push(DnType::OrganizationName, "Acme, Inc.");
        ca.distinguished_name
            .push(DnType::CommonName, "Acme Test CA");
        let issuer = Issuer::new(ca, ca_key);

        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        for (t, v) in subject {
            p.distinguished_name.push(t.clone(), *v);
        }
        p.subject_alt_names = sans;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.serial_number = Some(SerialNumber::from_slice(&[0x8a, 0x01, 0xff]));
        p.not_after = rcgen::date_time_ymd(2031, 5, 17);
        p.signed_by(&key, &issuer).unwrap().pem()
    }

    fn attrs(id: &Identity, name: &str) -> Vec<String> {
        id.attributes
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    #[test]
    fn claims_of_a_client_certificate() {
        let pem = client_cert(
            &[
                (DnType::CommonName, "alice"),
                (DnType::OrganizationName, "Acme"),
                (DnType::OrganizationalUnitName, "data"),
            ],
            vec![
                SanType::Rfc822Name("alice@example.com".try_into().unwrap()),
                SanType::DnsName("alice.example.com".try_into().unwrap()),
                SanType::URI("spiffe://example.com/ns/etl/sa/loader".try_into().unwrap()),
            ],
        );
        let id = identity_from_pem(&pem).unwrap();
        assert_eq!(id.principal, "alice");
        assert_eq!(id.groups, ["Acme", "data"]);
        assert_eq!(id.source, Source::Certificate);
        assert_eq!(attrs(&id, "cn"), ["alice"]);
        assert_eq!(attrs(&id, "email"), ["alice@example.com"]);
        assert_eq!(attrs(&id, "dns"), ["alice.example.com"]);
        assert_eq!(attrs(&id, "uri"), ["spiffe://example.com/ns/etl/sa/loader"]);
        assert_eq!(attrs(&id, "o"), ["Acme"]);
        assert_eq!(attrs(&id, "ou"), ["data"]);
        assert_eq!(attrs(&id, "serial"), ["8A01FF"]);
        assert_eq!(attrs(&id, "issuer"), ["CN=Acme Test CA,O=Acme\\, Inc."]);
        // 2031-05-17T00:00:00Z
        assert_eq!(id.expires_at, Some(1_936_742_400));
    }

    #[test]
    fn several_organisational_units_from_openssl() {
        // rcgen keeps one value per attribute type; openssl writes several.
        let out = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-keyout", "/dev/null", "-days", "1"])
            .args(["-subj", "/CN=carol/O=Acme/OU=data/OU=ops/OU=data"])
            .output()
            .expect("the openssl command makes this test certificate");
        assert!(out.status.success());
        let id = identity_from_pem(std::str::from_utf8(&out.stdout).unwrap()).unwrap();
        assert_eq!(id.principal, "carol");
        assert_eq!(id.groups, ["Acme", "data", "ops"]);
        assert_eq!(attrs(&id, "ou"), ["data", "ops", "data"]);
        assert_eq!(
            attrs(&id, "issuer"),
            ["OU=data,OU=ops,OU=data,O=Acme,CN=carol"]
        );
    }

    #[test]
    fn spiffe_id_is_the_principal_without_a_cn() {
        let pem = client_cert(
            &[(DnType::OrganizationName, "Acme")],
            vec![
                SanType::DnsName("svc.example.com".try_into().unwrap()),
                SanType::URI("spiffe://example.com/ns/etl/sa/loader".try_into().unwrap()),
            ],
        );
        let id = identity_from_pem(&pem).unwrap();
        assert_eq!(id.principal, "spiffe://example.com/ns/etl/sa/loader");
        assert!(attrs(&id, "cn").is_empty());
    }

    #[test]
    fn subject_email_address_counts_as_email() {
        let pem = client_cert(
            &[
                (DnType::CommonName, "bob"),
                (
                    DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
                    "bob@example.com",
                ),
            ],
            vec![],
        );
        let id = identity_from_pem(&pem).unwrap();
        assert_eq!(attrs(&id, "email"), ["bob@example.com"]);
        assert!(id.groups.is_empty());
    }

    #[test]
    fn refusals() {
        let no_name = client_cert(&[(DnType::OrganizationName, "Acme")], vec![]);
        assert_eq!(
            identity_from_pem(&no_name).unwrap_err(),
            "client certificate has no subject CN and no subject alternative name"
        );
        assert_eq!(identity_from_pem("").unwrap_err(), "no client certificate");
        assert!(identity_from_pem("garbage")
            .unwrap_err()
            .starts_with("client certificate is not PEM"));
        let key = KeyPair::generate().unwrap().serialize_pem();
        assert!(identity_from_pem(&key).unwrap_err().contains("PRIVATE KEY"));
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(identity_from_pem(broken)
            .unwrap_err()
            .starts_with("client certificate is not valid X.509"));
    }

    #[test]
    fn rfc4514_escaping() {
        let mut s = String::new();
        escape_into("#a, b+c\"d\\e<f>g;h ", &mut s);
        assert_eq!(s, "\\#a\\, b\\+c\\\"d\\\\e\\<f\\>g\\;h\\ ");
        let mut s = String::new();
        escape_into(" x\ny", &mut s);
        assert_eq!(s, "\\ x\\0Ay");
        assert_eq!(serial_hex(&[0, 0x80, 1]), "8001");
        assert_eq!(serial_hex(&[0]), "0");
    }
}
