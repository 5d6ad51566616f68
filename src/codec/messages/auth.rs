//! AUTHENTICATE, AUTH_RESPONSE, AUTH_CHALLENGE, AUTH_SUCCESS, and SASL PLAIN tokens.

use crate::codec::error::CodecError;
use crate::codec::primitives::{bytes, run_all, string};

/// AUTHENTICATE: the server's authenticator class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Authenticate<'a> {
    pub authenticator: &'a str,
}

impl<'a> Authenticate<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, CodecError> {
        Ok(Authenticate {
            authenticator: run_all("AUTHENTICATE", body, string)?,
        })
    }
}

/// The [bytes] token of AUTH_RESPONSE, AUTH_CHALLENGE and AUTH_SUCCESS (`None` is null).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthToken<'a> {
    pub token: Option<&'a [u8]>,
}

impl<'a> AuthToken<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, CodecError> {
        Ok(AuthToken {
            token: run_all("auth token", body, bytes)?,
        })
    }
}

/// AUTH_RESPONSE (client), AUTH_CHALLENGE and AUTH_SUCCESS (server) share the token layout.
pub type AuthResponse<'a> = AuthToken<'a>;
pub type AuthChallenge<'a> = AuthToken<'a>;
pub type AuthSuccess<'a> = AuthToken<'a>;

/// A SASL PLAIN token: `[authzid] NUL authcid NUL passwd`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SaslPlain<'a> {
    pub authzid: &'a str,
    pub username: &'a str,
    pub password: &'a str,
}

impl core::fmt::Debug for SaslPlain<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SaslPlain")
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl<'a> SaslPlain<'a> {
    /// Splits a token the way Cassandra's PasswordAuthenticator does: the password follows the
    /// last NUL, the username the one before; a third NUL, an empty username or an empty password
    /// is an error. Username and password must be UTF-8.
    pub fn parse(token: &'a [u8]) -> Result<Self, CodecError> {
        let mut parts = token.rsplitn(3, |b| *b == 0);
        let password = parts.next().unwrap_or_default();
        let username = parts
            .next()
            .ok_or(CodecError::Malformed("SASL PLAIN: no username"))?;
        let authzid = parts
            .next()
            .ok_or(CodecError::Malformed("SASL PLAIN: no NUL separator"))?;
        if authzid.contains(&0) {
            return Err(CodecError::Malformed("SASL PLAIN: too many NUL separators"));
        }
        if username.is_empty() || password.is_empty() {
            return Err(CodecError::Malformed(
                "SASL PLAIN: empty username or password",
            ));
        }
        let s = |b: &'a [u8]| {
            core::str::from_utf8(b).map_err(|_| CodecError::Malformed("SASL PLAIN: not UTF-8"))
        };
        Ok(SaslPlain {
            authzid: s(authzid)?,
            username: s(username)?,
            password: s(password)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_and_sasl_plain() {
        let mut b = 20u32.to_be_bytes().to_vec();
        b.extend_from_slice(b"\0cassandra\0cassandra");
        let t = AuthToken::decode(&b).unwrap();
        let p = SaslPlain::parse(t.token.unwrap()).unwrap();
        assert_eq!(
            (p.authzid, p.username, p.password),
            ("", "cassandra", "cassandra")
        );
        let p = SaslPlain::parse(b"admin\0alice\0eyJ.x.y").unwrap();
        assert_eq!(
            (p.authzid, p.username, p.password),
            ("admin", "alice", "eyJ.x.y")
        );
        assert!(!format!("{p:?}").contains("eyJ"));
        assert_eq!(AuthToken::decode(&[0xff; 4]).unwrap().token, None);
    }

    #[test]
    fn sasl_plain_errors() {
        for bad in [
            &b"alice\0"[..],
            b"\0\0pw",
            b"alice",
            b"a\0b\0c\0d",
            b"\0alice\0",
            b"",
        ] {
            assert!(SaslPlain::parse(bad).is_err(), "{bad:?}");
        }
        assert!(SaslPlain::parse(b"\0al\xffice\0pw").is_err());
    }

    #[test]
    fn authenticate_class() {
        let mut b = vec![0, 47];
        b.extend_from_slice(b"org.apache.cassandra.auth.PasswordAuthenticator");
        assert_eq!(
            Authenticate::decode(&b).unwrap().authenticator,
            "org.apache.cassandra.auth.PasswordAuthenticator"
        );
        assert!(Authenticate::decode(&b[..10]).is_err());
    }
}
