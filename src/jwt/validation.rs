//! Per-issuer validation rules and claim mapping.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::claims::{ClaimPath, Claims};
use super::key_source::{KeySource, StaticKeys};
use super::keys::VerificationKey;
use crate::error::{ConfigError, Error};
use crate::principal::PrincipalBuilder;

/// The default clock-skew allowance for `exp`, `nbf` and `iat`: 60 s.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// The default limit on a token's length, checked before any base64 decoding: 8 KiB.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;

pub(crate) type CustomCheck = Arc<dyn Fn(&Claims<'_>) -> Result<(), Error> + Send + Sync>;
pub(crate) type CustomMapping =
    Arc<dyn Fn(&Claims<'_>, PrincipalBuilder) -> Result<PrincipalBuilder, Error> + Send + Sync>;

/// One trusted issuer: its keys, its audience, its time rules and how its claims map into a
/// [`Principal`](crate::Principal).
///
/// Every rule starts strict; each setter's docs give the default and the risk of changing it.
/// See the [module docs](crate::jwt) for an example.
#[derive(Clone)]
pub struct Issuer {
    pub(crate) issuer: Box<str>,
    pub(crate) keys: Vec<VerificationKey>,
    pub(crate) source: Option<Arc<dyn KeySource>>,
    pub(crate) audiences: Vec<Box<str>>,
    pub(crate) any_audience: bool,
    pub(crate) leeway: u64,
    pub(crate) require_exp: bool,
    pub(crate) max_lifetime: Option<u64>,
    pub(crate) required_claims: Vec<Box<str>>,
    pub(crate) required_types: Vec<Box<str>>,
    pub(crate) accept_cnf: bool,
    pub(crate) tenant: Option<ClaimPath>,
    pub(crate) roles: Option<ClaimPath>,
    pub(crate) attributes: Vec<(Box<str>, ClaimPath)>,
    pub(crate) check: Option<CustomCheck>,
    pub(crate) mapping: Option<CustomMapping>,
}

impl Issuer {
    /// An issuer whose tokens carry exactly `iss` (compared byte for byte, RFC 7519 §4.1.1).
    ///
    /// Add keys with [`key`](Self::key) or a [`key_source`](Self::key_source), and an
    /// [`audience`](Self::audience); the authenticator refuses to build without them.
    #[must_use]
    pub fn new(iss: impl Into<Box<str>>) -> Self {
        Self {
            issuer: iss.into(),
            keys: Vec::new(),
            source: None,
            audiences: Vec::new(),
            any_audience: false,
            leeway: DEFAULT_LEEWAY.as_secs(),
            require_exp: true,
            max_lifetime: None,
            required_claims: Vec::new(),
            required_types: Vec::new(),
            accept_cnf: false,
            tenant: None,
            roles: None,
            attributes: Vec::new(),
            check: None,
            mapping: None,
        }
    }

    /// The issuer identifier.
    #[must_use]
    pub fn iss(&self) -> &str {
        &self.issuer
    }

    /// Adds a verification key. With more than one, each needs a distinct `kid` and tokens must
    /// name theirs.
    #[must_use]
    pub fn key(mut self, key: VerificationKey) -> Self {
        self.keys.push(key);
        self
    }

    /// Looks keys up in `source` (a JWKS source, your own store) instead of fixed keys.
    #[must_use]
    pub fn key_source(mut self, source: impl KeySource) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Adds an accepted audience: the token's `aud` (a string or an array of strings) must
    /// contain at least one accepted value. Required unless
    /// [`dangerous_accept_any_audience`](Self::dangerous_accept_any_audience).
    #[must_use]
    pub fn audience(mut self, audience: impl Into<Box<str>>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Accepts tokens whatever their `aud`, even none.
    ///
    /// # Security
    ///
    /// A token the issuer minted for *another* service is then accepted here (RFC 8725 §3.9):
    /// anyone who holds a token for any relying party of this issuer can call you. Only use it
    /// when the issuer serves this service alone, and check the audience yourself otherwise.
    #[must_use]
    pub fn dangerous_accept_any_audience(mut self) -> Self {
        self.any_audience = true;
        self
    }

    /// Sets the clock-skew allowance for `exp`, `nbf` and `iat`. Defaults to 60 s (as Envoy);
    /// more lets an expired or stolen token live that much longer, less refuses fresh tokens
    /// from an issuer whose clock runs slightly ahead.
    ///
    /// # Errors
    ///
    /// Over 10 minutes (RFC 7519: "no more than a few minutes").
    pub fn leeway(mut self, leeway: Duration) -> Result<Self, ConfigError> {
        if leeway > Duration::from_secs(600) {
            return Err(ConfigError::new("JWT leeway over 10 minutes"));
        }
        self.leeway = leeway.as_secs();
        Ok(self)
    }

    /// Refuses tokens whose lifetime (`exp − iat`, or `exp − now` without `iat`) exceeds
    /// `max`. Off by default; turning it on refuses long-lived tokens an issuer may mint by
    /// mistake or to an attacker.
    ///
    /// # Errors
    ///
    /// When `max` is zero.
    pub fn max_lifetime(mut self, max: Duration) -> Result<Self, ConfigError> {
        if max.is_zero() {
            return Err(ConfigError::new("maximum token lifetime must be positive"));
        }
        self.max_lifetime = Some(max.as_secs());
        Ok(self)
    }

    /// Accepts tokens without `exp`.
    ///
    /// # Security
    ///
    /// Such a token never expires: a leaked one works forever unless you revoke it (see
    /// [`JwtAuthenticatorBuilder::revocation`](super::JwtAuthenticatorBuilder::revocation)).
    /// Prefer [`max_lifetime`](Self::max_lifetime) with tokens that carry `exp`.
    #[must_use]
    pub fn dangerous_allow_missing_exp(mut self) -> Self {
        self.require_exp = false;
        self
    }

    /// Requires the claim `name` to be present (any JSON type). None by default.
    #[must_use]
    pub fn require_claim(mut self, name: impl Into<Box<str>>) -> Self {
        self.required_claims.push(name.into());
        self
    }

    /// Requires the `typ` header to be one of `types` (compared case-insensitively, with or
    /// without the `application/` prefix, RFC 7515 §4.1.9). Not checked by default; set it
    /// when the issuer also mints ID tokens or other JWTs with the same keys (RFC 8725 §3.11).
    #[must_use]
    pub fn require_type<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.required_types = types
            .into_iter()
            .map(|t| {
                let t = t.as_ref().to_ascii_lowercase();
                t.strip_prefix("application/").unwrap_or(&t).into()
            })
            .collect();
        self
    }

    /// Requires RFC 9068 access tokens: `typ` `at+jwt` (or `application/at+jwt`), so that an
    /// ID token of the same issuer is refused (RFC 9068 §4).
    #[must_use]
    pub fn require_access_token_type(self) -> Self {
        self.require_type(["at+jwt"])
    }

    /// Accepts tokens with a `cnf` (confirmation) claim as plain bearer tokens.
    ///
    /// # Security
    ///
    /// A `cnf` token is sender-constrained (DPoP, mTLS, RFC 7800): only the holder of the bound
    /// key may use it. This crate does not check that binding yet, so by default such tokens are
    /// refused. Accepting them anyway lets whoever stole one use it; check the binding yourself
    /// (e.g. with [`check`](Self::check)) before turning this on.
    #[must_use]
    pub fn dangerous_accept_sender_constrained_as_bearer(mut self) -> Self {
        self.accept_cnf = true;
        self
    }

    /// Reads the tenant from the string claim at `path`. None by default.
    #[must_use]
    pub fn tenant_claim(mut self, path: ClaimPath) -> Self {
        self.tenant = Some(path);
        self
    }

    /// Reads roles from the claim at `path`: an array of strings, or one string. None by
    /// default (`ClaimPath::new(["realm_access", "roles"])` for Keycloak,
    /// `ClaimPath::single("roles")` for Entra ID).
    #[must_use]
    pub fn roles_claim(mut self, path: ClaimPath) -> Self {
        self.roles = Some(path);
        self
    }

    /// Copies the claim at `path` into the principal's attribute `name` (any JSON value).
    #[must_use]
    pub fn copy_claim(mut self, path: ClaimPath, name: impl Into<Box<str>>) -> Self {
        self.attributes.push((name.into(), path));
        self
    }

    /// Adds your own check over the verified claims; an `Err` refuses the token with that
    /// error (use a `401`-class kind such as
    /// [`ErrorKind::InvalidClaims`](crate::ErrorKind::InvalidClaims)).
    #[must_use]
    pub fn check<F>(mut self, check: F) -> Self
    where
        F: Fn(&Claims<'_>) -> Result<(), Error> + Send + Sync + 'static,
    {
        self.check = Some(Arc::new(check));
        self
    }

    /// Adjusts the principal after the standard mapping (subject, tenant, scopes, roles,
    /// copied claims, credential id, expiry): add attributes, a plan, change roles…
    #[must_use]
    pub fn map_principal<F>(mut self, mapping: F) -> Self
    where
        F: Fn(&Claims<'_>, PrincipalBuilder) -> Result<PrincipalBuilder, Error>
            + Send
            + Sync
            + 'static,
    {
        self.mapping = Some(Arc::new(mapping));
        self
    }

    pub(crate) fn finish(mut self) -> Result<(Self, Arc<dyn KeySource>), ConfigError> {
        if self.issuer.is_empty() {
            return Err(ConfigError::new("an issuer needs a non-empty `iss`"));
        }
        if self.audiences.is_empty() && !self.any_audience {
            return Err(ConfigError::new(format!(
                "issuer {:?} has no audience (or call dangerous_accept_any_audience)",
                self.issuer
            )));
        }
        let source: Arc<dyn KeySource> = match (self.source.take(), self.keys.is_empty()) {
            (Some(_), false) => {
                return Err(ConfigError::new(
                    "an issuer takes keys or a key source, not both",
                ));
            }
            (Some(source), true) => source,
            (None, _) => Arc::new(StaticKeys::new(std::mem::take(&mut self.keys)).map_err(
                |e| ConfigError::new(format!("issuer {:?}: {}", self.issuer, e.message())),
            )?),
        };
        Ok((self, source))
    }
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("iss", &self.issuer)
            .field("keys", &self.keys)
            .field("source", &self.source)
            .field("audiences", &self.audiences)
            .field("any_audience", &self.any_audience)
            .field("leeway_secs", &self.leeway)
            .field("require_exp", &self.require_exp)
            .field("max_lifetime_secs", &self.max_lifetime)
            .field("required_claims", &self.required_claims)
            .field("required_types", &self.required_types)
            .field("accept_cnf", &self.accept_cnf)
            .field("tenant", &self.tenant)
            .field("roles", &self.roles)
            .field("attributes", &self.attributes)
            .field("check", &self.check.is_some())
            .field("mapping", &self.mapping.is_some())
            .finish()
    }
}
