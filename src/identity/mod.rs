//! Who the client is: OIDC tokens (JWT) and verified TLS client certificates, as claims.
