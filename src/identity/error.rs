//! Why a token was refused, worded for the error and audit logs: each reason says what an
//! operator or a user can act on, and none contains the token, a secret or a claim value.

use std::fmt;

/// Why [`JwtValidator::validate`](super::JwtValidator::validate) refused a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts of JSON objects, or a header without `alg`.
    Malformed,
    /// The header lists `crit` extensions, which this validator does not implement (RFC 7515
    /// §4.1.11 requires refusing them).
    CriticalHeader,
    /// `exp` is in the past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// None of the token's `aud` values is an accepted audience.
    WrongAudience,
    /// The token's `iss` is not an accepted issuer.
    WrongIssuer,
    /// The signature does not verify with the key the token names (or with any candidate key).
    BadSignature,
    /// No configured key has the token's `kid` (or, without `kid`, none fits its algorithm).
    UnknownKey { kid: Option<String> },
    /// The header's `alg` is not allowed: `none`, HMAC without a configured secret, or an
    /// algorithm outside the configured list.
    AlgorithmNotAllowed { alg: String },
    /// A claim the configuration requires is absent.
    MissingClaim { claim: String },
    /// A claim is present but of the wrong type (e.g. `exp` not a number, a principal that is
    /// not text).
    InvalidClaim { claim: String },
}

impl TokenError {
    /// An error naming a header value the client chose: shortened and stripped of anything
    /// that is not printable ASCII, so that it cannot forge or flood a log line.
    pub(crate) fn unknown_key(kid: Option<&str>) -> TokenError {
        TokenError::UnknownKey {
            kid: kid.map(printable),
        }
    }

    /// See [`TokenError::unknown_key`] about the value.
    pub(crate) fn algorithm_not_allowed(alg: &str) -> TokenError {
        TokenError::AlgorithmNotAllowed {
            alg: printable(alg),
        }
    }
}

/// At most 64 characters of `s`, with every character that is not printable ASCII (or is a
/// double quote or backslash) replaced by `?`.
fn printable(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Malformed => f.write_str("not a JWT"),
            TokenError::CriticalHeader => {
                f.write_str("token requires header extensions (crit) that are not supported")
            }
            TokenError::Expired => f.write_str("token expired"),
            TokenError::NotYetValid => f.write_str("token not yet valid"),
            TokenError::WrongAudience => f.write_str("token audience is not accepted"),
            TokenError::WrongIssuer => f.write_str("token issuer is not accepted"),
            TokenError::BadSignature => f.write_str("token signature does not verify"),
            TokenError::UnknownKey { kid: Some(kid) } => {
                write!(f, "token signed with unknown key id \"{kid}\"")
            }
            TokenError::UnknownKey { kid: None } => {
                f.write_str("token has no key id and no configured key fits its algorithm")
            }
            TokenError::AlgorithmNotAllowed { alg } => {
                write!(f, "token algorithm {alg} is not allowed")
            }
            TokenError::MissingClaim { claim } => write!(f, "token lacks the claim \"{claim}\""),
            TokenError::InvalidClaim { claim } => {
                write!(f, "token claim \"{claim}\" is not of the expected type")
            }
        }
    }
}

impl std::error::Error for TokenError {}

#[cfg(test)]
mod tests {
    use super::TokenError;

    #[test]
    fn messages() {
        let cases = [
            (TokenError::Malformed, "not a JWT"),
            (TokenError::Expired, "token expired"),
            (TokenError::NotYetValid, "token not yet valid"),
            (TokenError::WrongAudience, "token audience is not accepted"),
            (TokenError::WrongIssuer, "token issuer is not accepted"),
            (TokenError::BadSignature, "token signature does not verify"),
            (
                TokenError::unknown_key(Some("k9")),
                "token signed with unknown key id \"k9\"",
            ),
            (
                TokenError::algorithm_not_allowed("none"),
                "token algorithm none is not allowed",
            ),
            (
                TokenError::algorithm_not_allowed("HS256"),
                "token algorithm HS256 is not allowed",
            ),
            (
                TokenError::MissingClaim {
                    claim: "email".into(),
                },
                "token lacks the claim \"email\"",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
    }

    #[test]
    fn client_chosen_values_cannot_forge_log_lines() {
        let e = TokenError::unknown_key(Some("k1\"\n2026-01-01 [alert] x\u{7}é"));
        assert_eq!(
            e.to_string(),
            "token signed with unknown key id \"k1??2026-01-01 [alert] x??\""
        );
        let long = "A".repeat(1000);
        let TokenError::AlgorithmNotAllowed { alg } = TokenError::algorithm_not_allowed(&long)
        else {
            unreachable!()
        };
        assert_eq!(alg.len(), 64);
    }
}
