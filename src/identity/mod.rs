//! Who the client is: OIDC tokens (JWT) and verified TLS client certificates, turned into the
//! same kind of claims. Plain Rust, no NGINX types.
//!
//! - [`jwt`]: [`JwtValidator`] checks a token against the configured keys and rules;
//! - [`cache`]: [`TokenCache`] remembers validated tokens until they expire;
//! - [`certificate`]: [`identity_from_pem`] reads a client certificate NGINX verified.

mod base64url;
pub mod cache;
pub mod certificate;
mod claims;
mod error;
pub mod jwt;
mod keys;

#[cfg(test)]
mod cache_tests;
#[cfg(test)]
mod jwt_tests;
#[cfg(test)]
mod test_keys;

pub use cache::TokenCache;
pub use certificate::identity_from_pem;
pub use jwt::{JwtSettings, JwtValidator, TokenError};

/// Where an identity came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A JWT sent as the SASL PLAIN password of the CQL handshake.
    Token,
    /// A TLS client certificate that NGINX verified.
    Certificate,
}

impl Source {
    /// How a client with this identity authenticated, as logs name it: `jwt` or `mtls`.
    pub fn auth_method(self) -> &'static str {
        match self {
            Source::Token => "jwt",
            Source::Certificate => "mtls",
        }
    }
}

/// An authenticated client, as the policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Who: the token's principal claim, or the certificate's subject CN.
    pub principal: String,
    /// Groups or roles the identity provider gives: the token's roles claim, or the
    /// certificate's O and OU.
    pub groups: Vec<String>,
    /// Further attributes a policy may bind roles on, as (name, value) pairs: for tokens
    /// `iss`, `aud`, `email`, ...; for certificates `email`, `dns`, `uri` (SPIFFE IDs), `o`, `ou`.
    pub attributes: Vec<(String, String)>,
    /// Unix time (seconds) after which the identity is no longer valid: a token's `exp`,
    /// a certificate's notAfter.
    pub expires_at: Option<u64>,
    pub source: Source,
}
