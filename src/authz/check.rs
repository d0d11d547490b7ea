//! What every authorization stage shares: the name checks, the reasons, the counters, and the
//! code that turns a verdict into a forwarded request or a rejection.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use http::{Extensions, Request, Response};

use crate::error::{ConfigError, Error, ErrorKind};
use crate::principal::{NameKey, NameSet, Principal};
use crate::response::{Challenges, Responder, Scheme, reject};

/// Whether a principal needs every one of the names, or at least one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Match {
    /// Every name is required.
    All,
    /// At least one name is required.
    Any,
}

impl Match {
    /// `"all"` or `"any"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Any => "any",
        }
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Names {
    Scopes,
    Roles,
}

/// A required set of scopes or roles, prepared once: the names, and the space-delimited list for
/// the `scope` parameter and the audit reason.
#[derive(Clone)]
pub(crate) struct NameCheck {
    pub(crate) what: Names,
    pub(crate) mode: Match,
    names: Box<[NameKey]>,
    joined: Arc<str>,
}

/// RFC 6750 §3 `scope-token` characters: %x21 / %x23-5B / %x5D-7E.
fn is_scope_char(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

impl NameCheck {
    pub(crate) fn new<I>(what: Names, mode: Match, names: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut list: Vec<Box<str>> = Vec::new();
        for name in names {
            let name = name.as_ref();
            match what {
                Names::Scopes if name.is_empty() || !name.bytes().all(is_scope_char) => {
                    return Err(ConfigError::new(format!(
                        "scope {name:?} is not an RFC 6750 scope-token (printable ASCII without \
                         space, '\"' or '\\')"
                    )));
                }
                Names::Roles if name.is_empty() || name.contains(char::is_whitespace) => {
                    return Err(ConfigError::new(format!(
                        "role {name:?} is empty or contains whitespace"
                    )));
                }
                _ => {}
            }
            if !list.iter().any(|n| &**n == name) {
                list.push(name.into());
            }
        }
        if list.is_empty() {
            return Err(ConfigError::new(match what {
                Names::Scopes => "a scope requirement needs at least one scope",
                Names::Roles => "a role requirement needs at least one role",
            }));
        }
        let joined: Arc<str> = list.join(" ").into();
        Ok(Self {
            what,
            mode,
            names: list.iter().map(|n| NameKey::new(n)).collect(),
            joined,
        })
    }

    fn set<'p>(&self, principal: &'p Principal) -> &'p NameSet {
        match self.what {
            Names::Scopes => principal.scopes(),
            Names::Roles => principal.roles(),
        }
    }

    /// `true` when the principal satisfies this check. No allocation.
    #[inline]
    pub(crate) fn passes(&self, principal: &Principal) -> bool {
        let set = self.set(principal);
        match self.mode {
            Match::All => self.names.iter().all(|n| set.contains_key(n)),
            Match::Any => self.names.iter().any(|n| set.contains_key(n)),
        }
    }

    /// The refusal for a principal that does not pass. Allocates (the reject path only).
    pub(crate) fn refusal(&self, principal: &Principal) -> Refusal {
        let set = self.set(principal);
        let missing: String = match self.mode {
            Match::All => self
                .names
                .iter()
                .filter(|n| !set.contains_key(n))
                .map(NameKey::as_str)
                .collect::<Vec<_>>()
                .join(" "),
            Match::Any => self.joined.to_string(),
        };
        let reason = match self.what {
            Names::Scopes => DenialReason::MissingScopes {
                mode: self.mode,
                missing,
            },
            Names::Roles => DenialReason::MissingRoles {
                mode: self.mode,
                missing,
            },
        };
        Refusal {
            reason,
            scope: (self.what == Names::Scopes).then(|| Arc::clone(&self.joined)),
            error: None,
        }
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(NameKey::as_str)
    }
}

impl fmt::Debug for NameCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(match self.what {
            Names::Scopes => "Scopes",
            Names::Roles => "Roles",
        })
        .field("mode", &self.mode)
        .field("names", &self.names().collect::<Vec<_>>())
        .finish()
    }
}

/// The authenticated principal of a request: `None` when there is none or it is anonymous.
#[inline]
pub(crate) fn authenticated(extensions: &Extensions) -> Option<&Principal> {
    extensions.get::<Principal>().filter(|p| !p.is_anonymous())
}

/// The route pattern the router matched, when axum reported one.
#[inline]
pub(crate) fn matched_route(extensions: &Extensions) -> Option<&str> {
    #[cfg(feature = "axum")]
    {
        extensions
            .get::<axum::extract::MatchedPath>()
            .map(axum::extract::MatchedPath::as_str)
    }
    #[cfg(not(feature = "axum"))]
    {
        let _ = extensions;
        None
    }
}

/// Why authorization refused a request (or, in shadow mode, would have).
///
/// The layer that refuses puts it into the response's extensions next to the [`Error`] (and
/// makes it the error's source, so that logs of the error chain show it): read it with
/// `response.extensions().get::<Denial>()`. A shadow decision carries it in
/// [`ShadowDecision::denial`] instead, never on its own. It never reaches the response body.
#[derive(Clone)]
pub struct Denial {
    rule: Option<Arc<str>>,
    route: Option<Arc<str>>,
    reason: DenialReason,
    cause: Option<Error>,
}

/// The check that failed. See [`Denial`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenialReason {
    /// The request has no authenticated principal (none, or the anonymous one).
    Unauthenticated,
    /// Scopes are missing. For [`Match::All`], the ones the principal lacks; for
    /// [`Match::Any`], every one required (it holds none). Space-delimited.
    MissingScopes {
        /// All or any.
        mode: Match,
        /// The scopes, space-delimited.
        missing: String,
    },
    /// Roles are missing, as for scopes.
    MissingRoles {
        /// All or any.
        mode: Match,
        /// The roles, space-delimited.
        missing: String,
    },
    /// A policy denied.
    PolicyDenied,
    /// A policy failed or timed out; its error is [`Denial::policy_error`].
    PolicyFailed,
    /// The route matched, but the rule table has no rule for it and this method.
    UnlistedRoute,
    /// The request carries no matched route (axum's `MatchedPath`): the rule table was used
    /// outside `route_layer`, or the request reached a fallback.
    NoMatchedRoute,
}

impl fmt::Display for DenialReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unauthenticated => f.write_str("not authenticated"),
            Self::MissingScopes { mode, missing } => {
                write!(f, "missing scopes ({mode} of): {missing}")
            }
            Self::MissingRoles { mode, missing } => {
                write!(f, "missing roles ({mode} of): {missing}")
            }
            Self::PolicyDenied => f.write_str("policy denied"),
            Self::PolicyFailed => f.write_str("policy failed"),
            Self::UnlistedRoute => f.write_str("no rule for this route and method"),
            Self::NoMatchedRoute => f.write_str("no matched route"),
        }
    }
}

impl Denial {
    /// The rule-table rule that decided (`"GET /orders/{id}"`, `"* /health"` for any method);
    /// `None` for a single-route layer.
    #[must_use]
    pub fn rule(&self) -> Option<&str> {
        self.rule.as_deref()
    }

    /// The matched route pattern, when the framework reported one.
    #[must_use]
    pub fn route(&self) -> Option<&str> {
        self.route.as_deref()
    }

    /// The check that failed.
    #[must_use]
    pub fn reason(&self) -> &DenialReason {
        &self.reason
    }

    /// The error of a failed policy ([`DenialReason::PolicyFailed`]); also the
    /// [source](StdError::source) of this denial.
    #[must_use]
    pub fn policy_error(&self) -> Option<&Error> {
        self.cause.as_ref()
    }
}

impl fmt::Debug for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Denial");
        d.field("rule", &self.rule)
            .field("route", &self.route)
            .field("reason", &self.reason);
        if let Some(cause) = &self.cause {
            d.field("policy_error", cause);
        }
        d.finish()
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(rule) = &self.rule {
            write!(f, "rule `{rule}`: ")?;
        } else if let Some(route) = &self.route {
            write!(f, "route `{route}`: ")?;
        }
        fmt::Display::fmt(&self.reason, f)
    }
}

impl StdError for Denial {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.cause.as_ref().map(|e| e as &(dyn StdError + 'static))
    }
}

/// A check's refusal, before it is turned into a rejection or a shadow record.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) reason: DenialReason,
    /// The `scope` parameter of an `insufficient_scope` challenge.
    pub(crate) scope: Option<Arc<str>>,
    /// The error of a failed policy.
    pub(crate) error: Option<Error>,
}

impl Refusal {
    pub(crate) fn new(reason: DenialReason) -> Self {
        Self {
            reason,
            scope: None,
            error: None,
        }
    }

    pub(crate) fn unauthenticated() -> Self {
        Self::new(DenialReason::Unauthenticated)
    }

    /// A policy's refusal: denied, or failed with `error`.
    pub(crate) fn policy(result: Result<super::Decision, Error>) -> Option<Self> {
        match result {
            Ok(super::Decision::Allow) => None,
            Ok(super::Decision::Deny) => Some(Self::new(DenialReason::PolicyDenied)),
            Err(error) => Some(Self {
                reason: DenialReason::PolicyFailed,
                scope: None,
                error: Some(error),
            }),
        }
    }

    /// What the rejection is recorded as.
    pub(crate) fn kind(&self, authenticated: bool) -> ErrorKind {
        match (&self.reason, &self.error) {
            (_, Some(error)) => error.kind(),
            (DenialReason::Unauthenticated, _) => ErrorKind::AuthenticationRequired,
            // A route without a rule asks for credentials first: 401 tells an anonymous client
            // what to do, 403 tells an authenticated one not to retry.
            (DenialReason::UnlistedRoute | DenialReason::NoMatchedRoute, _) if !authenticated => {
                ErrorKind::AuthenticationRequired
            }
            (DenialReason::MissingScopes { .. }, _) => ErrorKind::InsufficientScope,
            (DenialReason::MissingRoles { .. }, _) => ErrorKind::InsufficientRole,
            _ => ErrorKind::PolicyDenied,
        }
    }

    fn into_denial(self, rule: Option<&Arc<str>>, extensions: &Extensions) -> Denial {
        Denial {
            rule: rule.cloned(),
            route: matched_route(extensions).map(Arc::from),
            reason: self.reason,
            cause: self.error,
        }
    }

    /// The rejection's error, with the denial as its source, and the denial.
    pub(crate) fn into_error(
        self,
        kind: ErrorKind,
        rule: Option<&Arc<str>>,
        extensions: &Extensions,
    ) -> (Error, Denial) {
        let mut error = Error::new(kind);
        let scope = self.scope.clone().or_else(|| {
            self.error
                .as_ref()
                .and_then(|e| e.required_scope().map(Arc::from))
        });
        if let Some(scope) = scope {
            error = error.with_required_scope(scope);
        }
        if let Some(cause) = &self.error {
            if let Some(after) = cause.retry_after() {
                error = error.with_retry_after(after);
            }
            if let Some(scheme) = cause.scheme() {
                error = error.with_scheme(*scheme);
            }
        }
        let denial = self.into_denial(rule, extensions);
        (error.with_source(denial.clone()), denial)
    }
}

/// The decision of a layer in shadow mode, in the response's extensions: the request passed
/// whatever it says.
///
/// A distinct type from [`Error`], so that an audit reading `Error` never reports a rejection
/// on a request that was served. When several shadow layers judge one request, a would-be
/// rejection is never overwritten by a later allow.
#[derive(Clone, Debug)]
pub struct ShadowDecision {
    would_reject: Option<ErrorKind>,
    rule: Option<Arc<str>>,
    denial: Option<Denial>,
}

impl ShadowDecision {
    /// `true` when the checks passed: enforcing would have allowed the request.
    #[must_use]
    pub fn allowed(&self) -> bool {
        self.would_reject.is_none()
    }

    /// The rejection enforcing would have answered with.
    #[must_use]
    pub fn would_reject(&self) -> Option<ErrorKind> {
        self.would_reject
    }

    /// The rule-table rule that decided, if any.
    #[must_use]
    pub fn rule(&self) -> Option<&str> {
        self.rule.as_deref()
    }

    /// Why enforcing would have refused the request.
    #[must_use]
    pub fn denial(&self) -> Option<&Denial> {
        self.denial.as_ref()
    }

    pub(crate) fn record<B>(self, res: &mut Response<B>) {
        let keep_existing = self.allowed()
            && res
                .extensions()
                .get::<ShadowDecision>()
                .is_some_and(|d| !d.allowed());
        if !keep_existing {
            res.extensions_mut().insert(self);
        }
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    rejected: [AtomicU64; ErrorKind::COUNT],
    shadow_allowed: AtomicU64,
    shadow_rejected: [AtomicU64; ErrorKind::COUNT],
}

impl Counters {
    fn bump(counters: &[AtomicU64; ErrorKind::COUNT], kind: ErrorKind) {
        if let Some(c) = counters.get(kind.index()) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> AuthzStats {
        AuthzStats {
            rejected: std::array::from_fn(|i| self.rejected[i].load(Relaxed)),
            shadow_allowed: self.shadow_allowed.load(Relaxed),
            shadow_rejected: std::array::from_fn(|i| self.shadow_rejected[i].load(Relaxed)),
        }
    }
}

/// A snapshot of an authorization layer's counters, shared by every service the layer built.
///
/// Allowed requests are not counted (a shared counter on the allow path would make every
/// request contend for one cache line); rejections and shadow decisions are.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthzStats {
    rejected: [u64; ErrorKind::COUNT],
    shadow_allowed: u64,
    shadow_rejected: [u64; ErrorKind::COUNT],
}

impl AuthzStats {
    /// Requests rejected for `kind`.
    #[must_use]
    pub fn rejected(&self, kind: ErrorKind) -> u64 {
        self.rejected.get(kind.index()).copied().unwrap_or(0)
    }

    /// Requests rejected, all reasons together.
    #[must_use]
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }

    /// Requests judged in shadow mode that would have been allowed.
    #[must_use]
    pub fn shadow_allowed(&self) -> u64 {
        self.shadow_allowed
    }

    /// Requests judged in shadow mode that would have been rejected for `kind`, and passed.
    #[must_use]
    pub fn shadow_rejected(&self, kind: ErrorKind) -> u64 {
        self.shadow_rejected.get(kind.index()).copied().unwrap_or(0)
    }

    /// Requests judged in shadow mode that would have been rejected, all reasons together.
    #[must_use]
    pub fn shadow_rejected_total(&self) -> u64 {
        self.shadow_rejected.iter().sum()
    }
}

impl fmt::Debug for AuthzStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nonzero = |counts: &[u64; ErrorKind::COUNT]| {
            ErrorKind::ALL
                .iter()
                .zip(counts.iter())
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| (*k, *n))
                .collect::<Vec<_>>()
        };
        f.debug_struct("AuthzStats")
            .field("rejected", &nonzero(&self.rejected))
            .field("shadow_allowed", &self.shadow_allowed)
            .field("shadow_rejected", &nonzero(&self.shadow_rejected))
            .finish()
    }
}

/// What every authorization layer holds besides its checks: the responder, the counters, and
/// whether it runs in shadow mode. Cloning it costs two reference counts.
pub(crate) struct Core<R> {
    pub(crate) responder: Arc<R>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) shadow: bool,
}

impl<R> Clone for Core<R> {
    fn clone(&self) -> Self {
        Self {
            responder: Arc::clone(&self.responder),
            counters: Arc::clone(&self.counters),
            shadow: self.shadow,
        }
    }
}

impl<R> Core<R> {
    pub(crate) fn new(responder: R) -> Self {
        Self {
            responder: Arc::new(responder),
            counters: Arc::default(),
            shadow: false,
        }
    }

    /// The same configuration with another responder.
    pub(crate) fn with_responder<R2>(&self, responder: R2) -> Core<R2> {
        Core {
            responder: Arc::new(responder),
            counters: Arc::clone(&self.counters),
            shadow: self.shadow,
        }
    }

    /// The same configuration, in or out of shadow mode.
    pub(crate) fn with_shadow(&self, shadow: bool) -> Self {
        Self {
            shadow,
            ..self.clone()
        }
    }

    pub(crate) fn stats(&self) -> AuthzStats {
        self.counters.snapshot()
    }

    /// The shadow record of a request whose checks passed.
    pub(crate) fn shadow_allow(&self, rule: Option<&Arc<str>>) -> ShadowDecision {
        self.counters.shadow_allowed.fetch_add(1, Relaxed);
        tracing::debug!(
            target: "credentialflow::authz",
            rule = rule.map(|r| &**r),
            "shadow mode: authorization would allow this request"
        );
        ShadowDecision {
            would_reject: None,
            rule: rule.cloned(),
            denial: None,
        }
    }

    /// Turns a refusal into either a rejection (`Err`) or, in shadow mode, the record to attach
    /// to the response of the forwarded request (`Ok`).
    pub(crate) fn refuse<B, ResBody>(
        &self,
        req: &Request<B>,
        refusal: Refusal,
        shadow: bool,
        rule: Option<&Arc<str>>,
    ) -> Result<ShadowDecision, Response<ResBody>>
    where
        R: Responder<ResBody>,
    {
        let kind = refusal.kind(authenticated(req.extensions()).is_some());
        if shadow {
            Counters::bump(&self.counters.shadow_rejected, kind);
            let denial = refusal.into_denial(rule, req.extensions());
            tracing::info!(
                target: "credentialflow::authz",
                would_reject = kind.as_str(),
                status = kind.status().as_u16(),
                reason = %denial,
                "shadow mode: authorization would reject this request; letting it pass"
            );
            return Ok(ShadowDecision {
                would_reject: Some(kind),
                rule: rule.cloned(),
                denial: Some(denial),
            });
        }
        Counters::bump(&self.counters.rejected, kind);
        let (mut error, denial) = refusal.into_error(kind, rule, req.extensions());
        tracing::debug!(
            target: "credentialflow::authz",
            reason = kind.as_str(),
            status = kind.status().as_u16(),
            denial = %denial,
            "request rejected by authorization"
        );
        let default;
        let challenges = match req.extensions().get::<Challenges>() {
            Some(c) => c,
            None => {
                default = Challenges::default_bearer();
                &default
            }
        };
        // `insufficient_scope` is a Bearer error (RFC 6750 §3.1): answer in that scheme when
        // the route accepts it, even if another scheme (an API key header) comes first.
        if kind == ErrorKind::InsufficientScope
            && error.scheme().is_none()
            && challenges.schemes().contains(&Scheme::BEARER)
        {
            error = error.with_scheme(Scheme::BEARER);
        }
        let mut res = reject(&*self.responder, error, challenges, req.headers());
        res.extensions_mut().insert(denial);
        Err(res)
    }
}
