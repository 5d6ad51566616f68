//! The label values of the metrics: fixed sets, so that no client can grow a series.
//!
//! Every set has `ALL` (its members in the order they are rendered) and `name()`, the label
//! value Prometheus sees. Roles and keyspaces are the only names that come from outside;
//! they are interned in the zone up to a configured number ([`super::zone`]).

use crate::classify::Category;
use crate::identity::TokenError;

/// A fixed set of label values, stored as consecutive counters.
pub trait LabelSet: Copy + 'static {
    const ALL: &'static [Self];
    /// The label's name in the exposition.
    const LABEL: &'static str;
    fn index(self) -> usize;
    fn name(self) -> &'static str;
    const COUNT: usize = Self::ALL.len();
}

macro_rules! label_set {
    ($(#[$doc:meta])* $ty:ident, $label:literal { $($variant:ident => $name:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $ty {
            $($variant),+
        }

        impl LabelSet for $ty {
            const ALL: &'static [Self] = &[$($ty::$variant),+];
            const LABEL: &'static str = $label;
            fn index(self) -> usize {
                self as usize
            }
            fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }
    };
}

label_set!(
    /// How a client logs in.
    Method, "method" {
        Jwt => "jwt",
        Mtls => "mtls",
    }
);

label_set!(
    /// How a login ended: `success`, or the class of its refusal.
    Login, "outcome" {
        Success => "success",
        Expired => "expired",
        NotYetValid => "not_yet_valid",
        Signature => "signature",
        Audience => "audience",
        Issuer => "issuer",
        UnknownKey => "unknown_key",
        Algorithm => "algorithm",
        Malformed => "malformed",
        Claim => "claim",
        NoRole => "no_role",
        NoCertificate => "no_certificate",
        Credentials => "credentials",
        Upstream => "upstream",
        ConnectionLimit => "connection_limit",
    }
);

impl Login {
    /// The class of a token refusal.
    pub fn of_token_error(error: &TokenError) -> Login {
        match error {
            TokenError::Expired => Login::Expired,
            TokenError::NotYetValid => Login::NotYetValid,
            TokenError::BadSignature => Login::Signature,
            TokenError::WrongAudience => Login::Audience,
            TokenError::WrongIssuer => Login::Issuer,
            TokenError::UnknownKey { .. } => Login::UnknownKey,
            TokenError::AlgorithmNotAllowed { .. } => Login::Algorithm,
            TokenError::Malformed | TokenError::CriticalHeader => Login::Malformed,
            TokenError::MissingClaim { .. } | TokenError::InvalidClaim { .. } => Login::Claim,
        }
    }
}

label_set!(
    /// The audit category of a request, as the audit log names it (lower case).
    RequestCategory, "category" {
        Query => "query",
        Dml => "dml",
        Ddl => "ddl",
        Dcl => "dcl",
        Auth => "auth",
        Prepare => "prepare",
        Error => "error",
        Other => "other",
    }
);

impl From<Category> for RequestCategory {
    fn from(category: Category) -> Self {
        match category {
            Category::Query => RequestCategory::Query,
            Category::Dml => RequestCategory::Dml,
            Category::Ddl => RequestCategory::Ddl,
            Category::Dcl => RequestCategory::Dcl,
            Category::Auth => RequestCategory::Auth,
            Category::Prepare => RequestCategory::Prepare,
            Category::Error => RequestCategory::Error,
            Category::Other => RequestCategory::Other,
        }
    }
}

label_set!(
    /// What the gate did with a request.
    Decision, "decision" {
        Allowed => "allowed",
        Denied => "denied",
        Unprepared => "unprepared",
        Limited => "limited",
        WouldDeny => "would_deny",
    }
);

label_set!(
    /// Why a request was denied.
    DenialReason, "reason" {
        Policy => "policy",
        TokenExpired => "token_expired",
        Unauthenticated => "unauthenticated",
        SyntaxError => "syntax_error",
        InvalidRequest => "invalid_request",
        Guardrail => "guardrail",
        RateLimit => "rate_limit",
        InFlightLimit => "in_flight_limit",
        ConnectionLimit => "connection_limit",
    }
);

label_set!(
    /// Cassandra's answer to a request the proxy forwarded: `result`, or its error, named
    /// after Cassandra's exception.
    Outcome, "outcome" {
        Result => "result",
        ServerError => "server_error",
        ProtocolError => "protocol_error",
        AuthenticationError => "authentication_error",
        Unavailable => "unavailable",
        Overloaded => "overloaded",
        IsBootstrapping => "is_bootstrapping",
        TruncateError => "truncate_error",
        WriteTimeout => "write_timeout",
        ReadTimeout => "read_timeout",
        ReadFailure => "read_failure",
        FunctionFailure => "function_failure",
        WriteFailure => "write_failure",
        CdcWriteFailure => "cdc_write_failure",
        CasWriteUnknown => "cas_write_unknown",
        SyntaxError => "syntax_error",
        Unauthorized => "unauthorized",
        Invalid => "invalid",
        ConfigError => "config_error",
        AlreadyExists => "already_exists",
        Unprepared => "unprepared",
        OtherError => "other_error",
    }
);

impl Outcome {
    /// The outcome of an ERROR with this code.
    pub fn of_error_code(code: i32) -> Outcome {
        match code {
            0x0000 => Outcome::ServerError,
            0x000A => Outcome::ProtocolError,
            0x0100 => Outcome::AuthenticationError,
            0x1000 => Outcome::Unavailable,
            0x1001 => Outcome::Overloaded,
            0x1002 => Outcome::IsBootstrapping,
            0x1003 => Outcome::TruncateError,
            0x1100 => Outcome::WriteTimeout,
            0x1200 => Outcome::ReadTimeout,
            0x1300 => Outcome::ReadFailure,
            0x1400 => Outcome::FunctionFailure,
            0x1500 => Outcome::WriteFailure,
            0x1600 => Outcome::CdcWriteFailure,
            0x1700 => Outcome::CasWriteUnknown,
            0x2000 => Outcome::SyntaxError,
            0x2100 => Outcome::Unauthorized,
            0x2200 => Outcome::Invalid,
            0x2300 => Outcome::ConfigError,
            0x2400 => Outcome::AlreadyExists,
            0x2500 => Outcome::Unprepared,
            _ => Outcome::OtherError,
        }
    }
}

label_set!(
    /// A cache of the proxy's.
    Cache, "cache" {
        Token => "token",
        Decision => "decision",
        Prepared => "prepared",
    }
);

label_set!(
    /// What a cache lookup did.
    CacheEvent, "event" {
        Hit => "hit",
        Miss => "miss",
        Eviction => "eviction",
    }
);

label_set!(
    /// The kind of a protocol violation that ended a connection.
    Violation, "kind" {
        VersionProbe => "version_probe",
        Codec => "invalid_stream",
        Unexpected => "unexpected_message",
        AuthResponseTooLarge => "auth_response_too_large",
        Upstream => "upstream",
        Identity => "identity",
        StreamInFlight => "stream_in_flight",
        NegativeStream => "negative_stream",
        TooManyLogins => "too_many_logins",
        AuthTimeout => "auth_timeout",
        Unbound => "unbound",
        ConnectionLimit => "connection_limit",
    }
);

label_set!(
    /// Which peer sent bytes.
    Peer, "from" {
        Client => "client",
        Server => "server",
    }
);

/// Upper bounds of the latency histograms, in microseconds: 1, 2.5 and 5 per decade from
/// 50 µs to 10 s (log-linear), then `+Inf`.
pub const LATENCY_BOUNDS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Counters of one histogram: one per bucket (not cumulative), `+Inf`, then the sum in µs.
pub const HISTOGRAM_WORDS: usize = LATENCY_BOUNDS_US.len() + 2;

/// The bucket a latency falls in (the last one is `+Inf`).
pub fn bucket(us: u64) -> usize {
    LATENCY_BOUNDS_US.partition_point(|&bound| bound < us)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distinct<L: LabelSet>() {
        for (i, l) in L::ALL.iter().enumerate() {
            assert_eq!(l.index(), i);
            let name = l.name();
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert_eq!(L::ALL.iter().filter(|o| o.name() == name).count(), 1);
        }
    }

    #[test]
    fn label_values_are_distinct_snake_case() {
        distinct::<Method>();
        distinct::<Login>();
        distinct::<RequestCategory>();
        distinct::<Decision>();
        distinct::<DenialReason>();
        distinct::<Outcome>();
        distinct::<Cache>();
        distinct::<CacheEvent>();
        distinct::<Violation>();
        distinct::<Peer>();
    }

    #[test]
    fn buckets_are_inclusive_upper_bounds() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(50), 0);
        assert_eq!(bucket(51), 1);
        assert_eq!(bucket(10_000_000), 16);
        assert_eq!(bucket(10_000_001), 17);
        assert_eq!(bucket(u64::MAX), 17);
    }

    #[test]
    fn error_codes_name_cassandras_exceptions() {
        assert_eq!(Outcome::of_error_code(0x1200), Outcome::ReadTimeout);
        assert_eq!(Outcome::of_error_code(0x2200).name(), "invalid");
        assert_eq!(Outcome::of_error_code(0x7777), Outcome::OtherError);
        assert_eq!(
            Login::of_token_error(&TokenError::Expired).name(),
            "expired"
        );
    }
}
