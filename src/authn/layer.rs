//! The `Authenticate` layer and its configuration.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use tower_layer::Layer;

use super::Authenticator;
use super::service::Authenticate;
use super::stats::{AuthStats, Counters};
use crate::error::ConfigError;
use crate::extract::CredentialSource;
use crate::response::{Challenges, DEFAULT_UNAVAILABLE_RETRY_AFTER, DefaultResponder, Scheme};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Required,
    Optional,
    InvalidAsAnonymous,
}

/// Everything an `Authenticate` service shares across requests, built once.
pub(crate) struct Shared<A, R> {
    pub(crate) authenticator: Arc<A>,
    pub(crate) responder: Arc<R>,
    pub(crate) mode: Mode,
    pub(crate) realm: Box<str>,
    pub(crate) describe: bool,
    pub(crate) challenges: Challenges,
    /// `false` when `challenges` are the default: nothing to tell later stages.
    pub(crate) insert_challenges: bool,
    pub(crate) sources: Box<[CredentialSource]>,
    pub(crate) sensitive: Box<[HeaderName]>,
    pub(crate) has_query_source: bool,
    pub(crate) strip: bool,
    pub(crate) cors_preflight: bool,
    pub(crate) unavailable_retry_after: Duration,
    pub(crate) counters: Arc<Counters>,
}

impl<A, R> Clone for Shared<A, R> {
    fn clone(&self) -> Self {
        Self {
            authenticator: Arc::clone(&self.authenticator),
            responder: Arc::clone(&self.responder),
            mode: self.mode,
            realm: self.realm.clone(),
            describe: self.describe,
            challenges: self.challenges.clone(),
            insert_challenges: self.insert_challenges,
            sources: self.sources.clone(),
            sensitive: self.sensitive.clone(),
            has_query_source: self.has_query_source,
            strip: self.strip,
            cors_preflight: self.cors_preflight,
            unavailable_retry_after: self.unavailable_retry_after,
            counters: Arc::clone(&self.counters),
        }
    }
}

/// Applies [`Authenticate`] to a service. See the [module docs](crate::authn) for an example.
///
/// Defaults: required mode, realm `"api"`, no `error_description`, credentials left in the
/// request, CORS preflight authenticated like any request, `Retry-After: 5` on `503`.
#[must_use]
pub struct AuthenticateLayer<A, R = DefaultResponder> {
    shared: Arc<Shared<A, R>>,
}

impl<A: Authenticator> AuthenticateLayer<A> {
    /// A layer in required mode: requests without a valid credential are refused.
    pub fn new(authenticator: A) -> Self {
        let sources: Box<[CredentialSource]> = authenticator.sources().into();
        let mut sensitive: Vec<HeaderName> = Vec::new();
        for name in sources.iter().filter_map(CredentialSource::header_name) {
            if !sensitive.contains(name) {
                sensitive.push(name.clone());
            }
        }
        let schemes = schemes_of(&sources);
        let challenges = Challenges::new("api", &schemes, false)
            .unwrap_or_else(|_| Challenges::default_bearer());
        Self {
            shared: Arc::new(Shared {
                authenticator: Arc::new(authenticator),
                responder: Arc::new(DefaultResponder),
                mode: Mode::Required,
                realm: "api".into(),
                describe: false,
                insert_challenges: !challenges.is_default(),
                challenges,
                has_query_source: sources.iter().any(CredentialSource::is_query),
                sensitive: sensitive.into(),
                sources,
                strip: false,
                cors_preflight: false,
                unavailable_retry_after: DEFAULT_UNAVAILABLE_RETRY_AFTER,
                counters: Arc::default(),
            }),
        }
    }
}

fn schemes_of(sources: &[CredentialSource]) -> Vec<Scheme> {
    let mut schemes: Vec<Scheme> = sources.iter().map(CredentialSource::scheme).collect();
    if schemes.is_empty() {
        schemes.push(Scheme::BEARER);
    }
    schemes
}

impl<A, R> AuthenticateLayer<A, R> {
    fn map(self, f: impl FnOnce(&mut Shared<A, R>)) -> Self {
        let mut shared = Arc::unwrap_or_clone(self.shared);
        f(&mut shared);
        Self {
            shared: Arc::new(shared),
        }
    }

    fn rebuild_challenges(shared: &Shared<A, R>) -> Result<Challenges, ConfigError> {
        Challenges::new(&shared.realm, &schemes_of(&shared.sources), shared.describe)
    }

    /// Required mode (the default): a request without a credential is `401`.
    pub fn required(self) -> Self {
        self.map(|s| s.mode = Mode::Required)
    }

    /// Optional mode: a request without a credential continues with
    /// [`Principal::anonymous`](crate::Principal::anonymous); a bad credential is still `401`,
    /// and an unavailable backend still `503`.
    pub fn optional(self) -> Self {
        self.map(|s| s.mode = Mode::Optional)
    }

    /// Lets requests with a *bad* credential (unknown, expired, revoked, forged: the `401`
    /// cases) continue as anonymous, as well as requests without one. Malformed, duplicated or
    /// conflicting credentials are still `400`, and an unavailable backend is still `503`.
    ///
    /// # Security
    ///
    /// A client presenting an expired, revoked or forged credential is not told so; it is served
    /// as anonymous. Every route behind this layer must then be safe for anonymous callers, and
    /// clients lose the `401` that tells them to refresh a token. The rejected reason is counted
    /// in [`AuthStats::invalid_as_anonymous`] and logged at debug level. Prefer
    /// [`optional`](Self::optional).
    pub fn dangerous_invalid_as_anonymous(self) -> Self {
        self.map(|s| s.mode = Mode::InvalidAsAnonymous)
    }

    /// Sets the realm of every challenge. Defaults to `"api"`.
    ///
    /// # Errors
    ///
    /// When the realm is empty or contains a character RFC 6750 §3 forbids (`"`, `\`, control
    /// or non-ASCII characters).
    pub fn realm(self, realm: &str) -> Result<Self, ConfigError> {
        let mut shared = Arc::unwrap_or_clone(self.shared);
        shared.realm = realm.into();
        shared.challenges = Self::rebuild_challenges(&shared)?;
        shared.insert_challenges = !shared.challenges.is_default();
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// Adds a generic `error_description` to challenges that carry an `error`. Off by default:
    /// the text is the same for every failure of a kind and never names the failed check, but
    /// it tells an attacker nothing the error code does not, and costs bytes.
    pub fn describe_errors(self, describe: bool) -> Self {
        self.map(|s| {
            s.describe = describe;
            if let Ok(c) = Self::rebuild_challenges(s) {
                s.insert_challenges = !c.is_default();
                s.challenges = c;
            }
        })
    }

    /// Removes the credential (header, query parameter, cookie) from the request before the
    /// inner service sees it. Off by default.
    ///
    /// # Security
    ///
    /// Only what is inside this layer is cleaned. axum's `Router` records the request URI in its
    /// `OriginalUri` extension *before* layers added with `Router::layer` run, so a query
    /// credential survives there; to strip query credentials, wrap the whole router instead
    /// (`AuthenticateLayer::new(..).layer(router)`) or keep keys out of URLs.
    pub fn strip_credentials(self, strip: bool) -> Self {
        self.map(|s| s.strip = strip)
    }

    /// Lets CORS preflight requests (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`) through without a credential and without a `Principal`,
    /// so a CORS layer inside can answer them. Off by default.
    ///
    /// Browsers never send credentials on a preflight, so with this off a CORS layer must sit
    /// *outside* this one.
    pub fn allow_cors_preflight(self, allow: bool) -> Self {
        self.map(|s| s.cors_preflight = allow)
    }

    /// How long clients are told to wait (`Retry-After`) after a `503` whose cause gave no
    /// estimate. Defaults to 5 s; shorter invites retry storms against a struggling backend.
    pub fn unavailable_retry_after(self, after: Duration) -> Self {
        self.map(|s| s.unavailable_retry_after = after)
    }

    /// Replaces the responder, for example with [`ProblemJson`](crate::response::ProblemJson).
    pub fn responder<R2>(self, responder: R2) -> AuthenticateLayer<A, R2> {
        let s = Arc::unwrap_or_clone(self.shared);
        AuthenticateLayer {
            shared: Arc::new(Shared {
                authenticator: s.authenticator,
                responder: Arc::new(responder),
                mode: s.mode,
                realm: s.realm,
                describe: s.describe,
                challenges: s.challenges,
                insert_challenges: s.insert_challenges,
                sources: s.sources,
                sensitive: s.sensitive,
                has_query_source: s.has_query_source,
                strip: s.strip,
                cors_preflight: s.cors_preflight,
                unavailable_retry_after: s.unavailable_retry_after,
                counters: s.counters,
            }),
        }
    }

    /// The challenges this layer answers `401` with.
    #[must_use]
    pub fn challenges(&self) -> &Challenges {
        &self.shared.challenges
    }

    /// A snapshot of the outcome counters, shared by every service this layer built.
    #[must_use]
    pub fn stats(&self) -> AuthStats {
        self.shared.counters.snapshot()
    }
}

impl<A, R> Clone for AuthenticateLayer<A, R> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<A, R> fmt::Debug for AuthenticateLayer<A, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_shared(&self.shared, f.debug_struct("AuthenticateLayer")).finish()
    }
}

pub(crate) fn debug_shared<'a, 'b, A, R>(
    s: &Shared<A, R>,
    mut d: fmt::DebugStruct<'a, 'b>,
) -> fmt::DebugStruct<'a, 'b> {
    d.field("mode", &s.mode)
        .field("challenges", &s.challenges)
        .field("sources", &s.sources)
        .field("strip", &s.strip)
        .field("cors_preflight", &s.cors_preflight)
        .field(
            "authenticator",
            &format_args!("{}", std::any::type_name::<A>()),
        );
    d
}

impl<S, A, R> Layer<S> for AuthenticateLayer<A, R> {
    type Service = Authenticate<S, A, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate::from_shared(inner, Arc::clone(&self.shared))
    }
}
