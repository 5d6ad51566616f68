//! A limit's key: text with variables, rendered once per connection.
//!
//! `$cql_principal`, `$cql_roles` and `$cql_auth_method` are the identity's, known once
//! the client has logged in. Any other variable (`$remote_addr`, `$ssl_client_s_dn`, a
//! `map`'s) is NGINX's, evaluated when the connection starts; the template only names them
//! ([`KeyTemplate::connection_variables`]) and the caller hands their values in that order.
//!
//! Names follow NGINX: `$name` or `${name}`, letters, digits and `_`, any case.

use core::fmt;

/// An identity's variable in a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityVar {
    /// `$cql_principal`: who logged in.
    Principal,
    /// `$cql_roles`: the roles the identity holds, sorted, separated by `,`.
    Roles,
    /// `$cql_auth_method`: how the client logged in.
    AuthMethod,
}

impl IdentityVar {
    const ALL: [IdentityVar; 3] = [
        IdentityVar::Principal,
        IdentityVar::Roles,
        IdentityVar::AuthMethod,
    ];

    /// The variable's name, without `$`.
    pub fn name(self) -> &'static str {
        match self {
            IdentityVar::Principal => "cql_principal",
            IdentityVar::Roles => "cql_roles",
            IdentityVar::AuthMethod => "cql_auth_method",
        }
    }
}

/// One piece of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Text(Box<str>),
    Identity(IdentityVar),
    /// The `n`th of [`KeyTemplate::connection_variables`].
    Connection(usize),
}

/// The identity's values a key may use.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityValues<'a> {
    pub principal: &'a str,
    /// The role names, written separated by `,`.
    pub roles: &'a [&'a str],
    pub auth_method: &'a str,
}

/// A parsed key: literal text and variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyTemplate {
    text: Box<str>,
    parts: Vec<Part>,
    connection: Vec<String>,
}

impl KeyTemplate {
    /// Parses a key as a directive gives it. A key needs a variable: without one, every
    /// client would share a single limit.
    pub fn parse(text: &str) -> Result<KeyTemplate, String> {
        if text.is_empty() {
            return Err("empty key".into());
        }
        let mut key = KeyTemplate {
            text: text.into(),
            parts: Vec::new(),
            connection: Vec::new(),
        };
        let bytes = text.as_bytes();
        let mut literal = 0;
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if b != b'$' {
                i += 1;
                continue;
            }
            key.push_text(text.get(literal..i).unwrap_or_default());
            i += 1;
            let braced = bytes.get(i) == Some(&b'{');
            if braced {
                i += 1;
            }
            let start = i;
            while bytes
                .get(i)
                .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_')
            {
                i += 1;
            }
            let name = text.get(start..i).unwrap_or_default();
            if braced {
                if bytes.get(i) != Some(&b'}') {
                    return Err(format!(
                        "the closing bracket in \"{name}\" variable is missing"
                    ));
                }
                i += 1;
            }
            if name.is_empty() {
                return Err(format!("invalid variable name in \"{text}\""));
            }
            key.push_variable(name)?;
            literal = i;
        }
        key.push_text(text.get(literal..).unwrap_or_default());
        if !key.parts.iter().any(|p| !matches!(p, Part::Text(_))) {
            return Err(format!(
                "the key \"{text}\" has no variable: every client would share one limit"
            ));
        }
        Ok(key)
    }

    fn push_text(&mut self, text: &str) {
        if !text.is_empty() {
            self.parts.push(Part::Text(text.into()));
        }
    }

    fn push_variable(&mut self, name: &str) -> Result<(), String> {
        if let Some(var) = IdentityVar::ALL
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(name))
        {
            self.parts.push(Part::Identity(var));
            return Ok(());
        }
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("cql_") {
            // The session's other variables are empty when the connection starts.
            return Err(format!(
                "the variable \"${name}\" cannot be in a key: of the session's variables, \
                 a key may use $cql_principal, $cql_roles and $cql_auth_method"
            ));
        }
        let index = match self.connection.iter().position(|n| *n == lower) {
            Some(index) => index,
            None => {
                self.connection.push(lower);
                self.connection.len() - 1
            }
        };
        self.parts.push(Part::Connection(index));
        Ok(())
    }

    /// The pieces of the key, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The NGINX variables the key uses (lowercase, without `$`, each once, in order of
    /// first use): the values [`KeyTemplate::render`] takes, in this order.
    pub fn connection_variables(&self) -> &[String] {
        &self.connection
    }

    /// Whether the key uses the identity, so can only be made once the client logged in.
    pub fn uses_identity(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Identity(_)))
    }

    /// Writes the key into `out` (cleared first). `connection` holds the values of
    /// [`KeyTemplate::connection_variables`]; a missing one is empty.
    pub fn render(&self, identity: &IdentityValues<'_>, connection: &[&[u8]], out: &mut Vec<u8>) {
        out.clear();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.extend_from_slice(text.as_bytes()),
                Part::Identity(IdentityVar::Principal) => {
                    out.extend_from_slice(identity.principal.as_bytes())
                }
                Part::Identity(IdentityVar::AuthMethod) => {
                    out.extend_from_slice(identity.auth_method.as_bytes())
                }
                Part::Identity(IdentityVar::Roles) => {
                    for (i, role) in identity.roles.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(role.as_bytes());
                    }
                }
                Part::Connection(i) => {
                    out.extend_from_slice(connection.get(*i).copied().unwrap_or_default())
                }
            }
        }
    }
}

impl fmt::Display for KeyTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> KeyTemplate {
        KeyTemplate::parse(text).expect("key")
    }

    fn render(key: &KeyTemplate, identity: &IdentityValues<'_>, connection: &[&[u8]]) -> String {
        let mut out = b"left over".to_vec();
        key.render(identity, connection, &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    const ALICE: IdentityValues<'static> = IdentityValues {
        principal: "alice@example.com",
        roles: &["shop_reader", "shop_writer"],
        auth_method: "token",
    };

    #[test]
    fn identity_and_connection_variables_are_told_apart() {
        let key = parse("${cql_principal}@$remote_addr:$CQL_Roles/$Remote_Addr$server_port");
        assert_eq!(
            key.parts(),
            &[
                Part::Identity(IdentityVar::Principal),
                Part::Text("@".into()),
                Part::Connection(0),
                Part::Text(":".into()),
                Part::Identity(IdentityVar::Roles),
                Part::Text("/".into()),
                Part::Connection(0),
                Part::Connection(1),
            ]
        );
        assert_eq!(key.connection_variables(), ["remote_addr", "server_port"]);
        assert!(key.uses_identity());
        let by_address = parse("$binary_remote_addr");
        assert!(!by_address.uses_identity());
        assert_eq!(by_address.connection_variables().len(), 1);
        assert_eq!(
            parse("$cql_auth_method").parts(),
            &[Part::Identity(IdentityVar::AuthMethod)]
        );
    }

    #[test]
    fn keys_render_their_values() {
        let key = parse("tenant-${cql_principal}/$cql_roles/$cql_auth_method@$remote_addr");
        assert_eq!(
            render(&key, &ALICE, &[b"10.0.0.7"]),
            "tenant-alice@example.com/shop_reader,shop_writer/token@10.0.0.7"
        );
        // No roles, no value: empty.
        let nobody = IdentityValues {
            roles: &[],
            ..ALICE
        };
        assert_eq!(
            render(&key, &nobody, &[]),
            "tenant-alice@example.com//token@"
        );
        let one = IdentityValues {
            roles: &["base"],
            ..ALICE
        };
        assert_eq!(render(&parse("$cql_roles"), &one, &[]), "base");
        // Values are bytes: a binary address stays as it is.
        let binary = parse("$binary_remote_addr");
        let mut out = Vec::new();
        binary.render(&ALICE, &[&[10, 0, 0, 7]], &mut out);
        assert_eq!(out, [10, 0, 0, 7]);
    }

    #[test]
    fn keys_print_as_written() {
        for text in [
            "$cql_principal",
            "${cql_principal}x",
            "a $remote_addr b",
            "$A$b",
        ] {
            assert_eq!(parse(text).to_string(), text);
        }
    }

    #[test]
    fn bad_keys_are_refused_with_nginx_wording() {
        for (text, error) in [
            ("", "empty key".to_string()),
            (
                "static",
                "the key \"static\" has no variable: every client would share one limit".into(),
            ),
            ("$", "invalid variable name in \"$\"".into()),
            ("user-$", "invalid variable name in \"user-$\"".into()),
            ("$-x", "invalid variable name in \"$-x\"".into()),
            ("a$ b", "invalid variable name in \"a$ b\"".into()),
            ("${}", "invalid variable name in \"${}\"".into()),
            (
                "${cql_principal",
                "the closing bracket in \"cql_principal\" variable is missing".into(),
            ),
            (
                "${na-me}",
                "the closing bracket in \"na\" variable is missing".into(),
            ),
        ] {
            assert_eq!(KeyTemplate::parse(text), Err(error), "{text:?}");
        }
        let keyspace = KeyTemplate::parse("$cql_keyspace").expect_err("refused");
        assert!(keyspace.starts_with("the variable \"$cql_keyspace\" cannot be in a key"));
    }
}
