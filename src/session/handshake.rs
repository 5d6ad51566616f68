//! The handshake when the proxy authenticates clients (`cql_auth`).
//!
//! The client's STARTUP goes to Cassandra, whose answer says whether Cassandra wants a
//! login of its own:
//!
//! * READY (Cassandra without authentication): a client with a verified certificate gets
//!   that READY; any other client is sent AUTHENTICATE naming PasswordAuthenticator, so
//!   every driver answers with SASL PLAIN, and its password is validated as a token. A valid
//!   token gets AUTH_SUCCESS, anything else ERROR 0x0100 with the reason.
//! * AUTHENTICATE (Cassandra with PasswordAuthenticator): the client is authenticated the
//!   same way, then the proxy logs in to Cassandra with the service credentials of
//!   `cql_upstream_auth`, on the client's stream, and relays the outcome. The client's token
//!   never reaches Cassandra. A client with a certificate is logged in without being asked
//!   anything, and gets READY once Cassandra accepted the service credentials.
//!
//! Until then only OPTIONS, STARTUP and AUTH_RESPONSE are accepted from the client.

use std::rc::Rc;

use crate::codec::messages::{codes, strip_prefixes, AuthToken, ErrorBody, SaslPlain};
use crate::codec::{Header, Opcode};
use crate::identity::Identity;
use crate::metrics::{Cache, Login, Method};
use crate::policy::RoleSet;

use super::{AuthMode, Direction, Fault, Fed, Session, Violation};

/// The authenticator class the proxy names in AUTHENTICATE: drivers answer it with SASL PLAIN.
pub(super) const PASSWORD_AUTHENTICATOR: &str = "org.apache.cassandra.auth.PasswordAuthenticator";

/// Where the connection's authentication is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AuthState {
    /// The proxy does not authenticate (`cql_auth off`): the handshake passes through.
    PassThrough,
    /// Waiting for the client's STARTUP.
    Startup,
    /// STARTUP went to Cassandra; waiting for its READY or AUTHENTICATE.
    UpstreamAnswer {
        stream: i16,
    },
    /// The client was sent AUTHENTICATE; waiting for its token in AUTH_RESPONSE.
    Token {
        login_upstream: bool,
    },
    /// The proxy logs in to Cassandra with the service credentials; waiting for AUTH_SUCCESS.
    /// `answer_ready`: the client (certificate) waits for READY rather than AUTH_SUCCESS.
    UpstreamLogin {
        stream: i16,
        answer_ready: bool,
    },
    Authenticated,
}

impl AuthState {
    /// Whether the server's bytes are held: the proxy may drop or replace its answers.
    pub(super) fn holds_server(self) -> bool {
        !matches!(self, AuthState::PassThrough | AuthState::Authenticated)
    }

    /// The reason a client message is not allowed now, if it is not.
    pub(super) fn refuses(self, opcode: Opcode) -> Option<&'static str> {
        use Opcode::*;
        let allowed = match self {
            AuthState::PassThrough => return None,
            AuthState::Authenticated => {
                return matches!(opcode, Startup | AuthResponse).then_some("after authentication")
            }
            AuthState::Startup => matches!(opcode, Options | Startup),
            AuthState::Token { .. } => matches!(opcode, Options | AuthResponse),
            AuthState::UpstreamAnswer { .. } | AuthState::UpstreamLogin { .. } => opcode == Options,
        };
        (!allowed).then_some(match self {
            AuthState::Startup => "before STARTUP",
            _ => "before authentication",
        })
    }
}

/// Which way the client proves who it is.
enum Path {
    Certificate(Identity),
    Token,
    /// `cql_auth mtls` and no verified certificate.
    Missing,
}

impl Session {
    fn path(&self) -> Path {
        match (self.config.auth, &self.certificate) {
            (AuthMode::Certificate | AuthMode::Any, Some(identity)) => {
                Path::Certificate(identity.clone())
            }
            (AuthMode::Certificate, None) => Path::Missing,
            _ => Path::Token,
        }
    }

    /// A server frame held during the handshake; says whether it goes on to the client.
    pub(super) fn on_held_response(&mut self, header: &Header, body: &[u8]) -> Result<bool, Fed> {
        self.on_response(header, Some(body));
        match (self.auth, header.opcode) {
            (AuthState::UpstreamAnswer { stream }, Opcode::Ready) => self.upstream_ready(stream),
            (AuthState::UpstreamAnswer { stream }, Opcode::Authenticate) => {
                self.upstream_authenticate(stream)
            }
            (
                AuthState::UpstreamLogin {
                    stream,
                    answer_ready,
                },
                Opcode::AuthSuccess,
            ) => {
                self.authenticated();
                if answer_ready {
                    self.answer_client(|f, out| f.write_ready(stream, out));
                    self.client_started();
                }
                Ok(!answer_ready)
            }
            (AuthState::UpstreamLogin { .. }, Opcode::AuthChallenge) => {
                Err(Fed::Close(Violation {
                    from: Direction::ServerToClient,
                    fault: Fault::Upstream(
                        "upstream asked for a second authentication step; the service \
                         credentials of cql_upstream_auth need PasswordAuthenticator",
                    ),
                }))
            }
            (
                AuthState::UpstreamLogin {
                    stream,
                    answer_ready,
                },
                Opcode::Error,
            ) => {
                // Cassandra refused the service credentials: the client gets its error. A
                // client that sent only STARTUP still speaks envelopes: the error is written
                // anew for it.
                self.auth = AuthState::Token {
                    login_upstream: true,
                };
                let refused = match &self.upstream_user {
                    Some(user) => format!("Cassandra refused the proxy's login as {user}"),
                    None => "Cassandra refused the proxy's login".to_string(),
                };
                self.audit_login(Err(&refused));
                self.meter_login_refused(self.login_method(), Login::Upstream);
                if !answer_ready {
                    return Ok(true);
                }
                let upstream = strip_prefixes(header, body)
                    .ok()
                    .and_then(|(_, rest)| ErrorBody::decode(rest, header.version).ok());
                let (code, message) = match upstream {
                    Some(error) => (error.code, error.message.to_string()),
                    None => (codes::AUTHENTICATION_ERROR, refused),
                };
                self.answer_client(|f, out| f.write_error(stream, code, &message, out));
                self.client_started();
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    /// Cassandra needs no login.
    fn upstream_ready(&mut self, stream: i16) -> Result<bool, Fed> {
        match self.path() {
            Path::Certificate(identity) => {
                if let Err(reason) = self.admit(identity) {
                    return Err(self.refuse_unbound(stream, &reason));
                }
                self.claim_connection(stream, Method::Mtls)?;
                self.authenticated();
                self.client_started();
                Ok(true)
            }
            Path::Token => {
                self.ask_for_token(stream, false);
                Ok(false)
            }
            Path::Missing => Err(self.missing_certificate(stream)),
        }
    }

    /// Cassandra wants a login: the proxy gives the service credentials.
    fn upstream_authenticate(&mut self, stream: i16) -> Result<bool, Fed> {
        let role_logins = self
            .config
            .policy
            .as_ref()
            .is_some_and(|p| p.upstream_logins().next().is_some());
        if self.config.upstream_login.is_none() && !role_logins {
            return Err(self.refuse_message(
                stream,
                codes::AUTHENTICATION_ERROR,
                "The proxy cannot log in to Cassandra: no service credentials are configured",
                Fault::Upstream(
                    "upstream requires authentication and cql_upstream_auth is not configured",
                ),
            ));
        }
        match self.path() {
            Path::Certificate(identity) => {
                if let Err(reason) = self.admit(identity) {
                    return Err(self.refuse_unbound(stream, &reason));
                }
                self.claim_connection(stream, Method::Mtls)?;
                self.login_upstream(stream, true)?;
                Ok(false)
            }
            Path::Token => {
                self.ask_for_token(stream, true);
                Ok(false)
            }
            Path::Missing => Err(self.missing_certificate(stream)),
        }
    }

    fn missing_certificate(&mut self, stream: i16) -> Fed {
        self.audit_login(Err("no verified TLS client certificate"));
        self.meter_login_refused(Method::Mtls, Login::NoCertificate);
        self.refuse_message(
            stream,
            codes::AUTHENTICATION_ERROR,
            "This server requires a verified TLS client certificate",
            Fault::Identity("client presented no verified TLS client certificate (cql_auth mtls)"),
        )
    }

    /// Sends the client AUTHENTICATE: its driver answers with the token as password.
    fn ask_for_token(&mut self, stream: i16, login_upstream: bool) {
        self.answer_client(|f, out| f.write_authenticate(stream, PASSWORD_AUTHENTICATOR, out));
        self.client_started();
        self.auth = AuthState::Token { login_upstream };
    }

    /// Sends Cassandra AUTH_RESPONSE on `stream` with the login of the identity's roles
    /// (`upstream_login` in the policy, its password from `cql_upstream_credentials`), else
    /// the service credentials (`cql_upstream_auth`).
    fn login_upstream(&mut self, stream: i16, answer_ready: bool) -> Result<(), Fed> {
        let config = Rc::clone(&self.config);
        let role_login = match (&config.policy, &self.roles) {
            (Some(policy), Some(roles)) => policy.upstream_login(roles),
            _ => None,
        };
        let login = match role_login {
            Some(name) => config
                .upstream_credentials
                .as_ref()
                .and_then(|credentials| credentials.get(name)),
            None => config.upstream_login.as_ref(),
        };
        let Some(login) = login else {
            // `nginx -t` refuses a policy login the credentials file does not have; a
            // server without any login for this identity cannot log it in.
            let message = match role_login {
                Some(name) => format!(
                    "The proxy cannot log in to Cassandra as {name}: cql_upstream_credentials has \
                     no such login"
                ),
                None => "The proxy cannot log in to Cassandra: no service credentials are \
                         configured"
                    .to_string(),
            };
            self.audit_login(Err(&message));
            return Err(self.refuse_message(
                stream,
                codes::AUTHENTICATION_ERROR,
                &message,
                Fault::Upstream(
                    "upstream requires authentication and no login is configured for the identity",
                ),
            ));
        };
        self.upstream_user = Some(login.user.clone());
        // Cassandra speaks segments from its AUTHENTICATE on (v5).
        self.framing(true).write_auth_response_plain(
            stream,
            &login.user,
            &login.password,
            &mut self.out.to_server,
        );
        self.auth = AuthState::UpstreamLogin {
            stream,
            answer_ready,
        };
        Ok(())
    }

    /// The identity's limits are claimed: a connection over `cql_limit_conn` is answered
    /// Overloaded on the login's stream and ends (in dry run it goes on, noted).
    fn claim_connection(&mut self, stream: i16, method: Method) -> Result<(), Fed> {
        let Err((reason, class)) = self.claim_quotas() else {
            return Ok(());
        };
        if self.config.dry_run {
            if let Some(meter) = self.meter() {
                meter.would_deny(class);
            }
            self.would_deny = Some(super::requests::Refusal::Limited { reason, class });
            return Ok(());
        }
        self.audit_login_over_limit(&reason);
        self.meter_login_refused(method, Login::ConnectionLimit);
        Err(self.refuse_message(stream, codes::OVERLOADED, &reason, Fault::ConnectionLimit))
    }

    /// The client's AUTH_RESPONSE: its password is the token. Never forwarded.
    pub(super) fn on_auth_response(
        &mut self,
        header: &Header,
        body: &[u8],
        now: u64,
    ) -> Result<bool, Fed> {
        let AuthState::Token { login_upstream } = self.auth else {
            return Ok(false);
        };
        let stream = header.stream;
        let token = AuthToken::decode(body)
            .ok()
            .and_then(|t| t.token)
            .and_then(|t| SaslPlain::parse(t).ok())
            .map(|plain| plain.password);
        let Some(token) = token else {
            return self.login_failed(
                stream,
                Login::Credentials,
                "not SASL PLAIN credentials",
                "Authentication failed: expected SASL PLAIN credentials with the token as password",
            );
        };
        let outcome = match &self.config.jwt {
            Some(validator) => {
                let mut shared = self.shared.borrow_mut();
                let before = shared.tokens.stats();
                let outcome = shared
                    .tokens
                    .validate(validator, self.config.generation, token, now);
                let after = shared.tokens.stats();
                drop(shared);
                self.meter_cache(Cache::Token, before, after);
                outcome
            }
            None => {
                return self.login_failed(
                    stream,
                    Login::Credentials,
                    "this server accepts no tokens",
                    "Authentication failed: this server accepts no tokens",
                );
            }
        };
        match outcome {
            Ok(identity) => {
                if let Err(reason) = self.admit(identity) {
                    let message = format!("Authentication failed: {reason}");
                    return self.login_failed(stream, Login::NoRole, &reason, &message);
                }
                self.claim_connection(stream, Method::Jwt)?;
                if login_upstream {
                    self.login_upstream(stream, false)?;
                } else {
                    self.authenticated();
                    self.answer_client(|f, out| f.write_auth_success(stream, out));
                }
            }
            Err(error) => {
                let reason = error.to_string();
                let message = format!("Authentication failed: {reason}");
                let class = Login::of_token_error(&error);
                return self.login_failed(stream, class, &reason, &message);
            }
        }
        Ok(false)
    }

    /// A refused login: the client is told why; after `cql_max_auth_attempts` refusals the
    /// connection ends.
    fn login_failed(
        &mut self,
        stream: i16,
        class: Login,
        reason: &str,
        message: &str,
    ) -> Result<bool, Fed> {
        self.audit_login(Err(reason));
        self.meter_login_refused(Method::Jwt, class);
        self.answer_client(|f, out| {
            f.write_error(stream, codes::AUTHENTICATION_ERROR, message, out)
        });
        self.failed_logins = self.failed_logins.saturating_add(1);
        if self.failed_logins >= self.config.limits.max_auth_attempts {
            return Err(self.end_after_answer(Fault::TooManyLogins {
                attempts: self.failed_logins,
            }));
        }
        Ok(false)
    }

    /// A certificate identity the policy gives no role: refused, and the connection ends
    /// (the client has nothing else to offer).
    fn refuse_unbound(&mut self, stream: i16, reason: &str) -> Fed {
        self.audit_login(Err(reason));
        self.meter_login_refused(Method::Mtls, Login::NoRole);
        let message = format!("Authentication failed: {reason}");
        self.refuse_message(
            stream,
            codes::AUTHENTICATION_ERROR,
            &message,
            Fault::Unbound,
        )
    }

    /// The identity proved who it is: it is the connection's, with its roles, unless the
    /// policy gives it none (`Err` with the reason), which is refused unless
    /// `cql_allow_unbound_identities` lets such identities in.
    fn admit(&mut self, identity: Identity) -> Result<(), String> {
        let roles = self
            .config
            .policy
            .as_ref()
            .map(|policy| policy.roles_for(&identity));
        if roles.as_ref().is_some_and(RoleSet::is_empty) && !self.config.allow_unbound {
            return Err(format!(
                "no role is bound to principal {}",
                identity.principal
            ));
        }
        if let (Some(policy), Some(roles)) = (&self.config.policy, &roles) {
            self.guards = policy.guards(roles);
        }
        self.roles = roles;
        self.audit_identity(&identity);
        self.identity = Some(identity);
        Ok(())
    }

    fn authenticated(&mut self) {
        self.auth = AuthState::Authenticated;
        self.release_after_login = true;
        self.open_limits();
        self.audit_login(Ok(()));
        self.meter_logged_in();
    }
}
