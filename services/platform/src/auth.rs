//! Bearer tokens: verification (HS256 with a shared secret in development, RS256 with a public key
//! or a JWKS file in production), the caller's identity handed to handlers, and service tokens
//! for calls between services.

use std::{collections::BTreeSet, path::PathBuf, sync::Arc, time::Duration};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, jwk::JwkSet};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use tonic::{Request, Status, service::Interceptor};

use crate::settings::SettingsError;

/// Token settings (`[auth]`).
#[derive(Clone, Debug, Deserialize)]
pub struct AuthSettings {
    /// Shared secret of HS256 user tokens (development). Unset in production.
    pub hs256_secret: Option<SecretString>,
    /// PEM file with the RSA public key of RS256 user tokens (production).
    pub rs256_public_key_file: Option<PathBuf>,
    /// JWKS file with the RSA public keys of RS256 user tokens, chosen by `kid` (production).
    pub jwks_file: Option<PathBuf>,
    /// Required `iss` claim.
    pub issuer: String,
    /// Required `aud` claim.
    pub audience: String,
    /// Shared secret of HS256 service tokens, which services present to each other.
    pub service_secret: SecretString,
}

impl AuthSettings {
    /// The development settings every service starts with by default (the `DEV_*` constants):
    /// what `cargo xtask token` and the tests sign with.
    pub fn development() -> Self {
        Self {
            hs256_secret: Some(DEV_HS256_SECRET.into()),
            rs256_public_key_file: None,
            jwks_file: None,
            issuer: DEV_ISSUER.into(),
            audience: DEV_AUDIENCE.into(),
            service_secret: DEV_SERVICE_SECRET.into(),
        }
    }

    /// At least one way to verify user tokens, and non-empty secrets.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.hs256_secret.is_none()
            && self.rs256_public_key_file.is_none()
            && self.jwks_file.is_none()
        {
            return Err(SettingsError::invalid(
                "auth",
                "set one of auth.hs256_secret, auth.rs256_public_key_file, auth.jwks_file",
            ));
        }
        if let Some(secret) = &self.hs256_secret
            && secret.expose_secret().len() < 16
        {
            return Err(SettingsError::invalid(
                "auth.hs256_secret",
                "must be at least 16 characters",
            ));
        }
        if self.service_secret.expose_secret().len() < 16 {
            return Err(SettingsError::invalid(
                "auth.service_secret",
                "must be at least 16 characters",
            ));
        }
        Ok(())
    }
}

/// The claims of a CRM token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user (or `service:<name>`).
    pub sub: String,
    /// Roles: admin, manager, sales, marketing, service.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// On a service token: the user the service acts for (DESIGN "Cross-service rules"). The
    /// callee trusts it because only a service can sign it, and applies that user's rights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obo: Option<OnBehalfOf>,
}

/// The user a service acts for, carried inside the service's token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnBehalfOf {
    /// The user's token subject.
    pub sub: String,
    /// The user's roles.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// Who is calling: put in the request extensions by [`AuthInterceptor`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Token subject: the user name, or `service:<name>` for a service acting on its own. For a
    /// service acting for a user, the user.
    pub subject: String,
    /// Roles granted by the token (for a service acting for a user, the user's).
    pub roles: BTreeSet<String>,
    /// Whether this is another CRM service acting on the system's behalf (all rights).
    pub is_service: bool,
    /// The CRM service that made the call, for itself or for `subject` (e.g. `marketing`);
    /// `None` for a user's own call.
    pub via_service: Option<String>,
}

impl Caller {
    /// The caller of a request that went through [`AuthInterceptor`].
    pub fn of<T>(request: &Request<T>) -> Result<&Caller, Status> {
        request
            .extensions()
            .get::<Caller>()
            .ok_or_else(|| Status::unauthenticated("missing bearer token"))
    }

    /// Whether the call comes from the CRM service `name`, acting on its own or for a user.
    pub fn is_from_service(&self, name: &str) -> bool {
        self.via_service.as_deref() == Some(name)
    }

    /// The namespace of the caller's request ids (idempotency keys): a service's own for calls
    /// a service makes, even for a user (its ids are derived by the service, e.g.
    /// `campaign:<c>:partner:<p>`, and must not repeat per user), else the user's.
    pub fn request_scope(&self) -> String {
        match &self.via_service {
            Some(service) => format!("{SERVICE_PREFIX}{service}"),
            None => self.subject.clone(),
        }
    }

    /// Whether the caller has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains(role)
    }

    /// Whether the caller has any of `roles`, or is `admin`, or is a service.
    pub fn has_any_role(&self, roles: &[&str]) -> bool {
        self.is_service || self.has_role("admin") || roles.iter().any(|r| self.has_role(r))
    }

    /// PERMISSION_DENIED unless the caller has one of `roles` (admin and services always pass).
    pub fn require_any_role(&self, roles: &[&str]) -> Result<(), Status> {
        if self.has_any_role(roles) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "this call needs one of the roles: {}",
                roles.join(", ")
            )))
        }
    }
}

/// Why a token was refused. `Display` gives the cause, for logs; the status sent to the caller
/// says only "missing bearer token" or "invalid token" (see the `From` impl), because the
/// cause can quote the token parser's internals.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `authorization: Bearer …` header.
    #[error("missing bearer token")]
    Missing,
    /// Signature, expiry, issuer or audience did not check out; the text is the cause.
    #[error("invalid token: {0}")]
    Invalid(String),
}

impl From<AuthError> for Status {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Missing => Status::unauthenticated("missing bearer token"),
            AuthError::Invalid(_) => Status::unauthenticated("invalid token"),
        }
    }
}

/// Failures reading the configured keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key could not be parsed.
    #[error("invalid key in {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

const SERVICE_PREFIX: &str = "service:";

/// HS256 secret of user tokens in the development defaults of every service and of
/// `cargo xtask token`. Production settings must replace it (or use RS256).
pub const DEV_HS256_SECRET: &str = "crm-development-user-secret-not-for-production";
/// HS256 secret of service tokens in the development defaults.
pub const DEV_SERVICE_SECRET: &str = "crm-development-service-secret-not-for-production";
/// `iss` claim in the development defaults.
pub const DEV_ISSUER: &str = "crm-dev";
/// `aud` claim in the development defaults.
pub const DEV_AUDIENCE: &str = "crm";

/// Verifies user and service tokens. Cheap to clone.
#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<VerifierInner>,
}

struct VerifierInner {
    hs256: Option<DecodingKey>,
    rs256: Option<DecodingKey>,
    jwks: Option<JwkSet>,
    service: DecodingKey,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("issuer", &self.inner.issuer)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// Reads the keys named by the settings.
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, KeyError> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| KeyError::Read {
                path: path.clone(),
                source,
            })
        };
        let rs256 = match &settings.rs256_public_key_file {
            Some(path) => {
                Some(
                    DecodingKey::from_rsa_pem(&read(path)?).map_err(|e| KeyError::Parse {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        let jwks = match &settings.jwks_file {
            Some(path) => Some(serde_json::from_slice::<JwkSet>(&read(path)?).map_err(|e| {
                KeyError::Parse {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?),
            None => None,
        };
        Ok(Self {
            inner: Arc::new(VerifierInner {
                hs256: settings
                    .hs256_secret
                    .as_ref()
                    .map(|s| DecodingKey::from_secret(s.expose_secret().as_bytes())),
                rs256,
                jwks,
                service: DecodingKey::from_secret(
                    settings.service_secret.expose_secret().as_bytes(),
                ),
                issuer: settings.issuer.clone(),
                audience: settings.audience.clone(),
            }),
        })
    }

    /// Verifies the value of an `authorization` header (`Bearer <jwt>`).
    pub fn verify_header(&self, header: Option<&str>) -> Result<Caller, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::Missing)?
            .trim();
        self.verify(token)
    }

    /// Verifies a bare JWT and returns the caller it names.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let inner = &self.inner;
        let key = match header.alg {
            Algorithm::HS256 => {
                // Service tokens and development user tokens are both HS256: the subject tells
                // which secret must have signed it.
                let claims = jsonwebtoken::dangerous::insecure_decode::<Claims>(token)
                    .map_err(|e| AuthError::Invalid(e.to_string()))?
                    .claims;
                if claims.sub.starts_with(SERVICE_PREFIX) {
                    &inner.service
                } else {
                    inner.hs256.as_ref().ok_or_else(|| {
                        AuthError::Invalid("HS256 user tokens are not accepted".into())
                    })?
                }
            }
            Algorithm::RS256 => match (&inner.jwks, &header.kid, &inner.rs256) {
                (Some(jwks), Some(kid), _) => {
                    let jwk = jwks
                        .find(kid)
                        .ok_or_else(|| AuthError::Invalid(format!("unknown key id {kid:?}")))?;
                    &DecodingKey::from_jwk(jwk).map_err(|e| AuthError::Invalid(e.to_string()))?
                }
                (_, _, Some(key)) => key,
                _ => return Err(AuthError::Invalid("RS256 tokens are not accepted".into())),
            },
            other => {
                return Err(AuthError::Invalid(format!(
                    "algorithm {other:?} is not accepted"
                )));
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&inner.issuer]);
        validation.set_audience(&[&inner.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?
            .claims;
        let service = claims.sub.strip_prefix(SERVICE_PREFIX).map(str::to_owned);
        Ok(match (service, claims.obo) {
            (Some(service), Some(user)) => Caller {
                subject: user.sub,
                roles: user.roles.into_iter().collect(),
                is_service: false,
                via_service: Some(service),
            },
            (Some(service), None) => Caller {
                subject: claims.sub,
                roles: claims.roles.into_iter().collect(),
                is_service: true,
                via_service: Some(service),
            },
            // A user token cannot claim to act for someone else.
            (None, _) => Caller {
                subject: claims.sub,
                roles: claims.roles.into_iter().collect(),
                is_service: false,
                via_service: None,
            },
        })
    }
}

/// Signs HS256 tokens: development user tokens (`cargo xtask token`) and service tokens.
#[derive(Clone)]
pub struct TokenIssuer {
    key: EncodingKey,
    issuer: String,
    audience: String,
}

impl TokenIssuer {
    /// An issuer of development user tokens, signed with `auth.hs256_secret`.
    pub fn for_users(settings: &AuthSettings) -> Option<Self> {
        settings.hs256_secret.as_ref().map(|secret| Self {
            key: EncodingKey::from_secret(secret.expose_secret().as_bytes()),
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
        })
    }

    /// An issuer of service tokens, signed with `auth.service_secret`.
    pub fn for_services(settings: &AuthSettings) -> Self {
        Self {
            key: EncodingKey::from_secret(settings.service_secret.expose_secret().as_bytes()),
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
        }
    }

    /// A token for `subject` with `roles`, valid for `ttl`.
    pub fn issue(&self, subject: &str, roles: &[&str], ttl: Duration) -> String {
        self.sign(subject, roles, None, ttl)
    }

    fn sign(
        &self,
        subject: &str,
        roles: &[&str],
        obo: Option<OnBehalfOf>,
        ttl: Duration,
    ) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Claims {
            sub: subject.to_owned(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now + ttl.as_secs(),
            obo,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .expect("HS256 signing with a secret cannot fail")
    }

    /// A service token for the service `name` acting for `user` (its subject and roles).
    pub fn issue_on_behalf_token(&self, name: &str, user: &Caller, ttl: Duration) -> String {
        self.sign(
            &format!("{SERVICE_PREFIX}{name}"),
            &[],
            Some(OnBehalfOf {
                sub: user.subject.clone(),
                roles: user.roles.iter().cloned().collect(),
            }),
            ttl,
        )
    }

    /// A service token for the service `name` (subject `service:<name>`).
    pub fn issue_service_token(&self, name: &str, ttl: Duration) -> String {
        self.issue(&format!("{SERVICE_PREFIX}{name}"), &[], ttl)
    }
}

/// A tonic interceptor that verifies the bearer token of every call and puts the [`Caller`] in
/// the request extensions; calls without a valid token are refused with UNAUTHENTICATED.
#[derive(Clone, Debug)]
pub struct AuthInterceptor {
    verifier: TokenVerifier,
}

impl AuthInterceptor {
    /// An interceptor verifying with `verifier`.
    pub fn new(verifier: TokenVerifier) -> Self {
        Self { verifier }
    }
}

impl Interceptor for AuthInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let caller = self.verifier.verify_header(header).inspect_err(|err| {
            tracing::info!(error = %err, "call refused: unauthenticated");
        })?;
        tracing::Span::current().record("enduser.id", caller.subject.as_str());
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// How long a service token lives; [`ServiceCallInterceptor`] renews it well before.
const SERVICE_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// A cached service token is replaced when less than this is left of it.
const SERVICE_TOKEN_RENEW_BEFORE: Duration = Duration::from_secs(60);

/// A tonic client interceptor for calls from one CRM service to another: it presents a service
/// token (`service:<name>`, renewed before it expires) and carries the current trace context,
/// so the callee knows who calls and the call joins the caller's trace (X4). Cheap to clone.
#[derive(Clone)]
pub struct ServiceCallInterceptor {
    name: String,
    issuer: TokenIssuer,
    cached: Arc<std::sync::Mutex<Option<(String, std::time::Instant)>>>,
}

impl ServiceCallInterceptor {
    /// An interceptor for the service `name`, signing with `settings.service_secret`.
    pub fn new(name: &str, settings: &AuthSettings) -> Self {
        Self {
            name: name.to_owned(),
            issuer: TokenIssuer::for_services(settings),
            cached: Arc::default(),
        }
    }

    /// The same service acting for `user`: the callee applies the user's rights and records
    /// the user as the actor, while trusting that a CRM service made the call. A user that is
    /// itself a service acting on its own is passed on as is.
    pub fn acting_for(&self, user: &Caller) -> OnBehalfInterceptor {
        let token = if user.is_service {
            self.token()
        } else {
            self.issuer
                .issue_on_behalf_token(&self.name, user, SERVICE_TOKEN_TTL)
        };
        OnBehalfInterceptor {
            authorization: format!("Bearer {token}"),
        }
    }

    fn token(&self) -> String {
        let mut cached = self
            .cached
            .lock()
            .expect("token cache mutex is never poisoned");
        let now = std::time::Instant::now();
        match &*cached {
            Some((token, expires)) if *expires > now + SERVICE_TOKEN_RENEW_BEFORE => token.clone(),
            _ => {
                let token = self
                    .issuer
                    .issue_service_token(&self.name, SERVICE_TOKEN_TTL);
                *cached = Some((token.clone(), now + SERVICE_TOKEN_TTL));
                token
            }
        }
    }
}

/// A client interceptor for one call made by a service for a user (see
/// [`ServiceCallInterceptor::acting_for`]): the on-behalf-of token and the trace context.
#[derive(Clone)]
pub struct OnBehalfInterceptor {
    authorization: String,
}

impl Interceptor for OnBehalfInterceptor {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let mut request = crate::telemetry::TraceContextInterceptor.call(request)?;
        let value = self
            .authorization
            .parse()
            .map_err(|_| Status::internal("service token is not a valid header value"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

impl Interceptor for ServiceCallInterceptor {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let mut request = crate::telemetry::TraceContextInterceptor.call(request)?;
        let value = format!("Bearer {}", self.token())
            .parse()
            .map_err(|_| Status::internal("service token is not a valid header value"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuthSettings {
        AuthSettings {
            hs256_secret: Some("development-secret-0123456789".into()),
            rs256_public_key_file: None,
            jwks_file: None,
            issuer: "crm-dev".into(),
            audience: "crm".into(),
            service_secret: "service-secret-0123456789".into(),
        }
    }

    #[test]
    fn a_user_token_round_trips_with_its_roles() {
        let s = settings();
        let token = TokenIssuer::for_users(&s).unwrap().issue(
            "ana",
            &["sales", "manager"],
            Duration::from_secs(60),
        );
        let caller = TokenVerifier::from_settings(&s)
            .unwrap()
            .verify_header(Some(&format!("Bearer {token}")))
            .unwrap();
        assert_eq!(caller.subject, "ana");
        assert!(caller.has_role("manager") && !caller.is_service);
    }

    #[test]
    fn a_service_token_is_signed_with_the_service_secret_only() {
        let s = settings();
        let verifier = TokenVerifier::from_settings(&s).unwrap();
        let good =
            TokenIssuer::for_services(&s).issue_service_token("tasks", Duration::from_secs(60));
        assert!(verifier.verify(&good).unwrap().is_service);
        // A user-secret signature on a service subject must not pass as a service.
        let forged = TokenIssuer::for_users(&s).unwrap().issue(
            "service:tasks",
            &[],
            Duration::from_secs(60),
        );
        assert!(verifier.verify(&forged).is_err());
    }

    #[test]
    fn a_token_signed_with_another_secret_or_for_another_audience_is_refused() {
        let s = settings();
        let verifier = TokenVerifier::from_settings(&s).unwrap();
        let mut other = settings();
        other.hs256_secret = Some("another-secret-0123456789".into());
        let token =
            TokenIssuer::for_users(&other)
                .unwrap()
                .issue("ana", &[], Duration::from_secs(60));
        assert!(verifier.verify(&token).is_err());
        let mut other = settings();
        other.audience = "elsewhere".into();
        let token =
            TokenIssuer::for_users(&other)
                .unwrap()
                .issue("ana", &[], Duration::from_secs(60));
        assert!(verifier.verify(&token).is_err());
        assert!(matches!(
            verifier.verify_header(None),
            Err(AuthError::Missing)
        ));
    }

    #[test]
    fn a_refused_token_answers_invalid_token_without_the_parser_details() {
        let verifier = TokenVerifier::from_settings(&settings()).unwrap();
        // A header whose `alg` is not a known algorithm: the parser names the variant it wanted.
        let bad_alg = format!(
            "{}.{}.sig",
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                br#"{"alg":"none","typ":"JWT"}"#
            ),
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                br#"{"sub":"ana"}"#
            ),
        );
        for token in [bad_alg.as_str(), "not-a-jwt", "a.b.c"] {
            let err = verifier.verify(token).unwrap_err();
            // The cause stays available for logs…
            assert!(matches!(err, AuthError::Invalid(ref cause) if !cause.is_empty()));
            // …and the caller learns only that the token is invalid.
            let status = Status::from(err);
            assert_eq!(status.code(), tonic::Code::Unauthenticated);
            assert_eq!(status.message(), "invalid token");
        }
    }

    #[test]
    fn a_service_acting_for_a_user_carries_the_users_rights_and_cannot_be_forged() {
        let s = settings();
        let verifier = TokenVerifier::from_settings(&s).unwrap();
        let ana = verifier
            .verify(&TokenIssuer::for_users(&s).unwrap().issue(
                "ana",
                &["sales"],
                Duration::from_secs(60),
            ))
            .unwrap();
        assert_eq!(ana.via_service, None);
        let mut call = ServiceCallInterceptor::new("marketing", &s).acting_for(&ana);
        let request = call.call(Request::new(())).unwrap();
        let header = request
            .metadata()
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap();
        let caller = verifier.verify_header(Some(header)).unwrap();
        assert_eq!(caller.subject, "ana");
        assert!(caller.has_role("sales") && !caller.has_role("admin"));
        assert!(!caller.is_service, "the user's rights, not the service's");
        assert!(caller.is_from_service("marketing"));
        // A user token claiming to act for someone is just that user.
        let forged = TokenIssuer::for_users(&s).unwrap().sign(
            "ana",
            &[],
            Some(OnBehalfOf {
                sub: "boss".into(),
                roles: vec!["admin".into()],
            }),
            Duration::from_secs(60),
        );
        let caller = verifier.verify(&forged).unwrap();
        assert_eq!(caller.subject, "ana");
        assert!(!caller.has_role("admin"));
        assert_eq!(caller.via_service, None);
    }

    #[test]
    fn a_service_call_presents_a_service_token_that_verifies() {
        let s = settings();
        let mut interceptor = ServiceCallInterceptor::new("tasks", &s);
        let request = interceptor.call(Request::new(())).unwrap();
        let header = request
            .metadata()
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap();
        let caller = TokenVerifier::from_settings(&s)
            .unwrap()
            .verify_header(Some(header))
            .unwrap();
        assert_eq!(caller.subject, "service:tasks");
        assert!(caller.is_service);
        // The token is reused while it is fresh.
        let again = interceptor.call(Request::new(())).unwrap();
        assert_eq!(again.metadata().get("authorization").unwrap(), header);
    }
}
