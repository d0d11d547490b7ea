//! Remote keys: a JWK Set fetched over HTTPS, optionally found by OIDC discovery (feature
//! `jwks`).
//!
//! A [`JwksKeySource`] is a [`KeySource`] for one issuer. Give it to
//! [`Issuer::key_source`](crate::jwt::Issuer::key_source); with several issuers, give each its
//! own source: the authenticator routes a token by its (still unverified) `iss` to the issuer's
//! source, and a source bound to an issuer never answers for another.
//!
//! # How keys are kept
//!
//! - **Lock-free reads.** The key set is an immutable map replaced whole (an `ArcSwap`): a
//!   token whose `kid` is known is answered synchronously, without allocating, without a lock,
//!   and never waits for a fetch in flight. Each key is kept in 8 copies, one per group of
//!   threads, so that threads verifying at once do not all write one reference count.
//! - **Background refresh** before the TTL runs out: the TTL is the response's
//!   `Cache-Control: max-age`, clamped to [`ttl_bounds`](JwksKeySourceBuilder::ttl_bounds)
//!   ([`DEFAULT_TTL`] without one; `no-store` and `no-cache` count as the minimum); the refresh
//!   runs at 80–90 % of it. A failed fetch is retried
//!   with jittered exponential backoff, and the previous keys keep serving meanwhile.
//! - **Unknown `kid`**: one refetch, shared by every request that misses meanwhile
//!   (single-flight), then a [cool-down](JwksKeySourceBuilder::cooldown) during which unknown
//!   `kid`s are answered from a negative cache without a fetch. A flood of tokens with random
//!   `kid`s costs at most one fetch per cool-down. After a successful refetch an unknown `kid`
//!   is `401 invalid_token`; if the refetch failed it is `503` with `Retry-After` (the identity
//!   provider is down; the token may be fine).
//! - **Never loaded** (identity provider down at start): `503` with `Retry-After`, never `401`
//!   or `500`. Await [`ready`](JwksKeySource::ready) at start-up to wait for the first load.
//! - **Fail closed on bad input**: responses are size-limited (reading stops at the limit) and
//!   timed out; a non-`200` status, invalid JSON or a set with no usable key keeps the previous
//!   keys. No redirect is followed; URLs come from configuration (and, with discovery, from the
//!   issuer's own metadata), never from a token: `jku`, `x5u` and `x5c` are ignored.
//!
//! # Which keys are used
//!
//! RSA, EC (P-256 → ES256, P-384 → ES384) and OKP (Ed25519 → EdDSA) keys; `oct` (HMAC) keys only
//! with [`dangerous_allow_symmetric_keys`](JwksKeySourceBuilder::dangerous_allow_symmetric_keys).
//! A JWK's `alg` binds the key to that algorithm, which must also be among the configured
//! [`algorithms`](JwksKeySourceBuilder::algorithms); a key without `alg` gets the configured
//! algorithms its type allows (an RSA key: the configured RS/PS ones). Keys marked `use: enc`,
//! or whose `key_ops` lack `verify`, are ignored. A key that is invalid, of an unsupported
//! type or curve, or not allowed is skipped on its own (counted in
//! [`JwksStats::skipped_keys`]); it does not poison the rest of the set. At most 100 keys are
//! read from one document.
//!
//! Several keys may share a `kid` (some providers publish one RSA and one EC key under one id):
//! all are kept, and a token naming that `kid` gets the first one, in document order, bound to
//! the token's `alg`. A token without `kid` gets the key bound to its `alg` only if exactly one
//! key of the set is.
//!
//! # Runtime
//!
//! [`build`](JwksKeySourceBuilder::build) must run inside a tokio runtime: the source spawns a
//! background task there (and its fetches). The task holds only a weak reference and stops
//! when the last clone of the source is dropped.
//!
//! # Example
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use credentialflow::Principal;
//! use credentialflow::authn::AuthenticateLayer;
//! use credentialflow::jwt::{Issuer, JwksKeySource, JwtAuthenticator};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Finds `jwks_uri` in https://login.example.com/.well-known/openid-configuration.
//! let keys = JwksKeySource::oidc("https://login.example.com").build()?;
//! keys.ready().await?; // optional: wait for the first key set before serving
//!
//! let authenticator = JwtAuthenticator::builder()
//!     .issuer(
//!         Issuer::new("https://login.example.com")
//!             .audience("orders-api")
//!             .key_source(keys.clone()),
//!     )
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/me", get(|p: Principal| async move { p.subject().to_owned() }))
//!     .layer(AuthenticateLayer::new(authenticator));
//! # Ok(())
//! # }
//! ```

mod error;
mod fetch;
mod parse;
mod stats;

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use http::header::CACHE_CONTROL;
use http::{HeaderMap, StatusCode, Uri};
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::Deserialize;
use tokio::sync::{Notify, watch};

pub use self::error::{JwksError, JwksErrorKind};
pub use self::fetch::{HttpFetcher, JwksFetcher};
pub use self::stats::JwksStats;

use self::parse::{KeySet, ParseRules, parse_key_set};
use self::stats::Counters;
use super::key_source::{KeyFuture, KeyLookup, KeyQuery, KeySource};
use super::keys::{ALL_ALGORITHMS, AlgorithmSet};
use crate::clock::{Clock, SystemClock};
use crate::error::{ConfigError, Error};

/// The key-set lifetime when the response has no `Cache-Control: max-age`: 5 minutes.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// The shortest lifetime a `max-age` may set: 1 minute.
pub const DEFAULT_MIN_TTL: Duration = Duration::from_secs(60);
/// The longest lifetime a `max-age` may set: 1 hour (a key the provider withdrew is dropped
/// at the latest this long after).
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(3600);
/// The time after a refetch for an unknown `kid` during which no other such refetch runs: 30 s.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);
/// The limit on one fetch (connect, headers and body): 5 s.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The limit on a response body: 256 KiB.
pub const DEFAULT_MAX_RESPONSE_SIZE: usize = 256 * 1024;

const OIDC_PATH: &str = "/.well-known/openid-configuration";
const OAUTH_PATH: &str = "/.well-known/oauth-authorization-server";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Jwks,
    OpenId,
    OAuth,
}

/// Builds a [`JwksKeySource`]. See the [module docs](self).
#[must_use]
pub struct JwksKeySourceBuilder<F = HttpFetcher> {
    mode: Mode,
    url: String,
    issuer: Option<Box<str>>,
    fetcher: Result<F, ConfigError>,
    clock: Arc<dyn Clock>,
    algorithms: Option<AlgorithmSet>,
    allow_symmetric: bool,
    allow_http: bool,
    ttl: Duration,
    min_ttl: Duration,
    max_ttl: Duration,
    cooldown: Duration,
    timeout: Duration,
    max_size: usize,
    backoff: (Duration, Duration),
}

impl<F> fmt::Debug for JwksKeySourceBuilder<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksKeySourceBuilder")
            .field("mode", &self.mode)
            .field("url", &self.url)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl JwksKeySource<HttpFetcher> {
    /// A source fetching the JWK Set at `jwks_url` (`https://`).
    ///
    /// Bind it to its issuer with [`issuer`](JwksKeySourceBuilder::issuer) when one source
    /// object could end up serving several issuers.
    pub fn builder(jwks_url: impl Into<String>) -> JwksKeySourceBuilder<HttpFetcher> {
        JwksKeySourceBuilder::new(Mode::Jwks, jwks_url.into(), None)
    }

    /// A source for `issuer` found by OpenID Connect discovery: it reads
    /// `{issuer}/.well-known/openid-configuration` (a trailing `/` of the issuer removed first),
    /// requires its `issuer` to equal `issuer` exactly, and fetches its `jwks_uri`. The source
    /// only answers for `issuer`.
    ///
    /// Discovery runs before the first fetch, and again after a JWKS fetch fails (the
    /// provider may have moved its keys).
    pub fn oidc(issuer: impl Into<Box<str>>) -> JwksKeySourceBuilder<HttpFetcher> {
        let issuer = issuer.into();
        JwksKeySourceBuilder::new(Mode::OpenId, issuer.to_string(), Some(issuer))
    }

    /// As [`oidc`](Self::oidc), with the OAuth 2.0 authorization server metadata of RFC 8414
    /// §3: `https://host/.well-known/oauth-authorization-server{/issuer path}`.
    pub fn oauth_authorization_server(
        issuer: impl Into<Box<str>>,
    ) -> JwksKeySourceBuilder<HttpFetcher> {
        let issuer = issuer.into();
        JwksKeySourceBuilder::new(Mode::OAuth, issuer.to_string(), Some(issuer))
    }
}

impl JwksKeySourceBuilder<HttpFetcher> {
    fn new(mode: Mode, url: String, issuer: Option<Box<str>>) -> Self {
        Self {
            mode,
            url,
            issuer,
            fetcher: HttpFetcher::new(),
            clock: Arc::new(SystemClock),
            algorithms: None,
            allow_symmetric: false,
            allow_http: false,
            ttl: DEFAULT_TTL,
            min_ttl: DEFAULT_MIN_TTL,
            max_ttl: DEFAULT_MAX_TTL,
            cooldown: DEFAULT_COOLDOWN,
            timeout: DEFAULT_FETCH_TIMEOUT,
            max_size: DEFAULT_MAX_RESPONSE_SIZE,
            backoff: (Duration::from_secs(1), Duration::from_secs(60)),
        }
    }
}

impl<F: JwksFetcher> JwksKeySourceBuilder<F> {
    /// Fetches with `fetcher` instead of the default [`HttpFetcher`]: a private CA, mutual TLS,
    /// a proxy, your own client.
    pub fn fetcher<G: JwksFetcher>(self, fetcher: G) -> JwksKeySourceBuilder<G> {
        JwksKeySourceBuilder {
            mode: self.mode,
            url: self.url,
            issuer: self.issuer,
            fetcher: Ok(fetcher),
            clock: self.clock,
            algorithms: self.algorithms,
            allow_symmetric: self.allow_symmetric,
            allow_http: self.allow_http,
            ttl: self.ttl,
            min_ttl: self.min_ttl,
            max_ttl: self.max_ttl,
            cooldown: self.cooldown,
            timeout: self.timeout,
            max_size: self.max_size,
            backoff: self.backoff,
        }
    }

    /// Answers only for tokens of `issuer` (set already by discovery). Unset with
    /// [`builder`](JwksKeySource::builder): the source answers for whichever issuer it is
    /// given to.
    pub fn issuer(mut self, issuer: impl Into<Box<str>>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The algorithms keys may be used with. Defaults to every asymmetric algorithm (RS, PS,
    /// ES256, ES384, EdDSA); naming the one your provider uses (often just RS256) means an
    /// `alg`-less RSA key is bound to it alone. Keys whose `alg` is not listed are skipped.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// The clock for TTLs, backoff and the cool-down ([`FakeClock`](crate::clock::FakeClock)
    /// in tests). The background schedule sleeps on tokio's timer for the intervals this
    /// clock gives.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The key-set lifetime when the response has no `Cache-Control: max-age`. Defaults to
    /// [`DEFAULT_TTL`] (5 min). Longer keeps a withdrawn key in use longer; unknown `kid`s are
    /// refetched whatever the TTL, so rotation does not wait for it.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The bounds a `max-age` is clamped to. Default 1 min to 1 h. A lower minimum lets the
    /// provider make you fetch more often; a higher maximum keeps withdrawn keys longer.
    pub fn ttl_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min_ttl = min;
        self.max_ttl = max;
        self
    }

    /// The time after a refetch for an unknown `kid` during which unknown `kid`s are answered
    /// from the negative cache. Defaults to [`DEFAULT_COOLDOWN`] (30 s). Shorter lets garbage
    /// tokens cause more fetches; longer makes a key published right after a refetch wait
    /// longer (tokens naming it get `401` until then).
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The limit on each fetch, connection to last body byte. Defaults to
    /// [`DEFAULT_FETCH_TIMEOUT`] (5 s). A request waiting on a refetch is also bounded by the
    /// authenticator's own [`timeout`](crate::jwt::JwtAuthenticatorBuilder::timeout) (2 s by
    /// default): past it the request gets `503` while the fetch goes on for the next ones.
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The limit on a response body; reading stops beyond it and the fetch fails. Defaults to
    /// [`DEFAULT_MAX_RESPONSE_SIZE`] (256 KiB).
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.max_size = bytes;
        self
    }

    /// The retry delay after the first failed fetch and its ceiling; it doubles per failure,
    /// each delay drawn at random between half and all of it. Defaults to 1 s and 60 s.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = (initial, max);
        self
    }

    /// Accepts plain `http://` URLs (configured or discovered).
    ///
    /// # Security
    ///
    /// Anyone on the network path can then substitute their own keys and mint tokens you
    /// accept. Only for tests and identity providers on loopback.
    pub fn dangerous_allow_http(mut self) -> Self {
        self.allow_http = true;
        self
    }

    /// Accepts `oct` (HMAC secret) JWKs, for the HS algorithms among
    /// [`algorithms`](Self::algorithms) (which must then name them).
    ///
    /// # Security
    ///
    /// A symmetric key verifies *and* mints: whoever can read the JWK Set (usually everyone)
    /// can forge tokens. Only for a key set that is itself secret and served over TLS.
    pub fn dangerous_allow_symmetric_keys(mut self) -> Self {
        self.allow_symmetric = true;
        self
    }

    /// Validates the configuration, spawns the background task on the current tokio runtime
    /// and starts the first fetch.
    ///
    /// # Errors
    ///
    /// No tokio runtime; an invalid URL, or `http://` without
    /// [`dangerous_allow_http`](Self::dangerous_allow_http); zero timeout, cool-down or size
    /// limit; inverted TTL bounds; no usable algorithm.
    pub fn build(self) -> Result<JwksKeySource<F>, ConfigError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::new("JwksKeySource::build must be called inside a tokio runtime")
        })?;
        let fetcher = self.fetcher?;
        let location = match self.mode {
            Mode::Jwks => parse_url(&self.url, self.allow_http).map_err(url_error)?,
            Mode::OpenId | Mode::OAuth => {
                let issuer = parse_url(&self.url, self.allow_http).map_err(url_error)?;
                if issuer.query().is_some() {
                    return Err(ConfigError::new("an issuer URL has no query"));
                }
                metadata_url(&issuer, self.mode).map_err(url_error)?
            }
        };
        if self.timeout.is_zero() || self.cooldown.is_zero() || self.max_size == 0 {
            return Err(ConfigError::new(
                "JWKS fetch timeout, cool-down and response size limit must be positive",
            ));
        }
        if self.min_ttl > self.max_ttl || self.min_ttl.is_zero() {
            return Err(ConfigError::new(
                "JWKS TTL bounds: the minimum must be positive and at most the maximum",
            ));
        }
        if self.backoff.0.is_zero() || self.backoff.0 > self.backoff.1 {
            return Err(ConfigError::new(
                "JWKS backoff: the initial delay must be positive and at most the maximum",
            ));
        }
        let algorithms = self.algorithms.unwrap_or_else(|| {
            ALL_ALGORITHMS
                .into_iter()
                .filter(|a| a.family() != AlgorithmFamily::Hmac)
                .collect()
        });
        let hmac = algorithms
            .iter()
            .any(|a| a.family() == AlgorithmFamily::Hmac);
        if algorithms.is_empty() || (hmac && !self.allow_symmetric) {
            return Err(ConfigError::new(
                "JWKS algorithms: name at least one; HS algorithms need dangerous_allow_symmetric_keys",
            ));
        }
        let config = Config {
            mode: self.mode,
            location,
            issuer: self.issuer,
            rules: ParseRules {
                algorithms,
                allow_symmetric: self.allow_symmetric,
            },
            allow_http: self.allow_http,
            ttl: self.ttl.clamp(self.min_ttl, self.max_ttl),
            min_ttl: self.min_ttl,
            max_ttl: self.max_ttl,
            cooldown: self.cooldown,
            timeout: self.timeout,
            max_size: self.max_size,
            backoff: self.backoff,
        };
        let now = self.clock.monotonic();
        let wake = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            config,
            fetcher,
            clock: self.clock,
            keys: ArcSwap::from_pointee(KeySet::default()),
            loaded: AtomicBool::new(false),
            last_ok: AtomicBool::new(false),
            flight_active: AtomicBool::new(false),
            miss_fetch_at: AtomicU64::new(0),
            state: Mutex::new(State {
                flight: None,
                jwks_uri: None,
                failures: 0,
                next_refresh: now,
                last_error: None,
            }),
            counters: Counters::default(),
            wake: Arc::clone(&wake),
            runtime: runtime.clone(),
        });
        runtime.spawn(schedule(Arc::downgrade(&inner), wake));
        Ok(JwksKeySource { inner })
    }
}

fn url_error(e: JwksError) -> ConfigError {
    ConfigError::new(e.to_string())
}

/// Parses a configured or discovered URL: absolute, `https` (or `http` when allowed), a host,
/// no user info.
fn parse_url(url: &str, allow_http: bool) -> Result<Uri, JwksError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| JwksError::invalid(format!("invalid URL: {e}")))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if allow_http => {}
        Some("http") => {
            return Err(JwksError::new(JwksErrorKind::InsecureUrl)
                .with_detail("use https, or dangerous_allow_http for tests and loopback"));
        }
        _ => return Err(JwksError::invalid("URL must be absolute https://")),
    }
    match uri.authority() {
        Some(a) if !a.as_str().contains('@') && !a.host().is_empty() => Ok(uri),
        _ => Err(JwksError::invalid("URL needs a host and no user info")),
    }
}

fn metadata_url(issuer: &Uri, mode: Mode) -> Result<Uri, JwksError> {
    let (scheme, authority) = match (issuer.scheme_str(), issuer.authority()) {
        (Some(s), Some(a)) => (s, a.as_str()),
        _ => return Err(JwksError::invalid("issuer must be an absolute URL")),
    };
    let path = issuer.path().trim_end_matches('/');
    let url = match mode {
        Mode::OAuth => format!("{scheme}://{authority}{OAUTH_PATH}{path}"),
        _ => format!("{scheme}://{authority}{path}{OIDC_PATH}"),
    };
    url.parse()
        .map_err(|e| JwksError::invalid(format!("invalid discovery URL: {e}")))
}

#[derive(Debug)]
struct Config {
    mode: Mode,
    /// The JWKS URL, or the discovery document's.
    location: Uri,
    issuer: Option<Box<str>>,
    rules: ParseRules,
    allow_http: bool,
    ttl: Duration,
    min_ttl: Duration,
    max_ttl: Duration,
    cooldown: Duration,
    timeout: Duration,
    max_size: usize,
    backoff: (Duration, Duration),
}

type Outcome = Result<(), JwksError>;
type Flight = watch::Receiver<Option<Outcome>>;

/// Bookkeeping off the read path: touched by fetches and misses, never by a hit, never held
/// across an `.await`.
struct State {
    flight: Option<Flight>,
    jwks_uri: Option<Uri>,
    failures: u32,
    next_refresh: Duration,
    last_error: Option<JwksError>,
}

struct Inner<F> {
    config: Config,
    fetcher: F,
    clock: Arc<dyn Clock>,
    keys: ArcSwap<KeySet>,
    loaded: AtomicBool,
    last_ok: AtomicBool,
    flight_active: AtomicBool,
    /// Monotonic nanoseconds + 1 when the last refetch for an unknown `kid` started; 0 never.
    miss_fetch_at: AtomicU64,
    state: Mutex<State>,
    counters: Counters,
    wake: Arc<Notify>,
    runtime: tokio::runtime::Handle,
}

impl<F> Drop for Inner<F> {
    fn drop(&mut self) {
        // Wakes the background task, which then finds the source gone and ends.
        self.wake.notify_one();
    }
}

#[derive(Clone, Copy, Debug)]
enum Trigger {
    Schedule,
    UnknownKid,
    Ready,
}

/// A [`KeySource`] over a remote JWK Set. Cheap to clone (one `Arc`); clones share keys,
/// fetches and counters. See the [module docs](self) for how it behaves and an example.
pub struct JwksKeySource<F = HttpFetcher> {
    inner: Arc<Inner<F>>,
}

impl<F> Clone for JwksKeySource<F> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<F> fmt::Debug for JwksKeySource<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("JwksKeySource")
            .field("url", &format_args!("{}", inner.config.location))
            .field("issuer", &inner.config.issuer)
            .field("keys", &inner.keys.load().len())
            .field("loaded", &inner.loaded.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<F: JwksFetcher> JwksKeySource<F> {
    /// Waits until a key set is loaded: returns at once if one is, else joins the fetch in
    /// flight or starts one. Await it at start-up to serve no request before the keys are in
    /// (requests meanwhile get `503`); retry it with a delay of your choice if it fails.
    ///
    /// # Errors
    ///
    /// The fetch failed: a [`StoreUnavailable`](crate::ErrorKind::StoreUnavailable) error
    /// with `Retry-After` and the [`JwksError`] as its source.
    pub async fn ready(&self) -> Result<(), Error> {
        if self.inner.loaded.load(Ordering::Acquire) {
            return Ok(());
        }
        let flight = {
            let mut state = self.inner.lock();
            if self.inner.loaded.load(Ordering::Acquire) {
                return Ok(());
            }
            self.inner.join_or_start(&mut state, Trigger::Ready)
        };
        let _ = await_flight(flight).await;
        if self.inner.loaded.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(self.inner.unavailable())
        }
    }

    /// The counters: fetches, failures, refreshes, cool-down hits, key-set changes.
    #[must_use]
    pub fn stats(&self) -> JwksStats {
        self.inner
            .counters
            .snapshot(self.inner.loaded.load(Ordering::Acquire))
    }

    /// The `kid`s of the current key set, sorted.
    #[must_use]
    pub fn key_ids(&self) -> Vec<String> {
        self.inner.keys.load().kids().map(str::to_owned).collect()
    }

    /// The issuer this source answers for, if bound to one.
    #[must_use]
    pub fn issuer(&self) -> Option<&str> {
        self.inner.config.issuer.as_deref()
    }
}

impl<F: JwksFetcher> KeySource for JwksKeySource<F> {
    #[inline]
    fn lookup(&self, query: &KeyQuery<'_>) -> KeyLookup {
        let inner = &*self.inner;
        if let Some(issuer) = &inner.config.issuer
            && **issuer != *query.issuer
        {
            return KeyLookup::Ready(Ok(None));
        }
        if let Some(key) = inner.keys.load().find(query.kid, query.alg) {
            return KeyLookup::Ready(Ok(Some(Arc::clone(key))));
        }
        Inner::miss(&self.inner, query)
    }
}

impl<F: JwksFetcher> Inner<F> {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn in_cooldown(&self, now: Duration) -> bool {
        match self.miss_fetch_at.load(Ordering::Acquire) {
            0 => false,
            at => now.saturating_sub(Duration::from_nanos(at - 1)) < self.config.cooldown,
        }
    }

    #[cold]
    fn miss(this: &Arc<Self>, query: &KeyQuery<'_>) -> KeyLookup {
        let now = this.clock.monotonic();
        if !this.flight_active.load(Ordering::Acquire) && this.in_cooldown(now) {
            return this.negative();
        }
        let flight = {
            let mut state = this.lock();
            let in_flight = state
                .flight
                .as_ref()
                .is_some_and(|f| f.has_changed().is_ok());
            if !in_flight && this.in_cooldown(now) {
                drop(state);
                return this.negative();
            }
            if !in_flight {
                let nanos = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX - 1);
                this.miss_fetch_at.store(nanos + 1, Ordering::Release);
            }
            this.join_or_start(&mut state, Trigger::UnknownKid)
        };
        let inner = Arc::clone(this);
        let kid: Option<Box<str>> = query.kid.map(Box::from);
        let alg = query.alg;
        let future: KeyFuture = Box::pin(async move {
            let outcome = await_flight(flight).await;
            if let Some(key) = inner.keys.load().find(kid.as_deref(), alg) {
                return Ok(Some(Arc::clone(key)));
            }
            match outcome {
                Ok(()) => Ok(None),
                Err(_) => Err(inner.unavailable()),
            }
        });
        KeyLookup::Pending(future)
    }

    /// An unknown `kid` during the cool-down.
    fn negative(&self) -> KeyLookup {
        Counters::bump(&self.counters.cooldown_hits);
        if self.last_ok.load(Ordering::Acquire) {
            KeyLookup::Ready(Ok(None))
        } else {
            KeyLookup::Ready(Err(self.unavailable()))
        }
    }

    /// `503` with `Retry-After`: the next fetch the schedule or the cool-down allows.
    fn unavailable(&self) -> Error {
        let now = self.clock.monotonic();
        let (error, next) = {
            let state = self.lock();
            let error = state
                .last_error
                .clone()
                .unwrap_or_else(|| JwksError::new(JwksErrorKind::NotLoaded));
            (error, state.next_refresh.saturating_sub(now))
        };
        let cooldown_left = match self.miss_fetch_at.load(Ordering::Acquire) {
            0 => Duration::ZERO,
            at => (Duration::from_nanos(at - 1) + self.config.cooldown).saturating_sub(now),
        };
        let after = next.min(cooldown_left.max(Duration::from_secs(1)));
        Error::unavailable(error).with_retry_after(after.max(Duration::from_secs(1)))
    }

    /// Joins the fetch in flight, or starts one. Called with the state locked.
    fn join_or_start(self: &Arc<Self>, state: &mut State, trigger: Trigger) -> Flight {
        if let Some(flight) = &state.flight
            && flight.has_changed().is_ok()
        {
            return flight.clone();
        }
        match trigger {
            Trigger::Schedule => Counters::bump(&self.counters.refreshes),
            Trigger::UnknownKid => Counters::bump(&self.counters.unknown_kid_refetches),
            Trigger::Ready => {}
        }
        let (tx, rx) = watch::channel(None);
        state.flight = Some(rx.clone());
        self.flight_active.store(true, Ordering::Release);
        let inner = Arc::clone(self);
        self.runtime.spawn(async move {
            tracing::debug!(?trigger, url = %inner.config.location, "fetching JWK Set");
            let result = AssertUnwindSafe(inner.fetch())
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(JwksError::new(JwksErrorKind::Aborted)));
            let outcome = inner.finish(result);
            let _ = tx.send(Some(outcome));
        });
        rx
    }

    async fn get(&self, uri: &Uri) -> Result<http::Response<bytes::Bytes>, JwksError> {
        let max = self.config.max_size;
        let response = tokio::time::timeout(self.config.timeout, self.fetcher.get(uri, max))
            .await
            .map_err(|_| JwksError::timeout(self.config.timeout))??;
        if response.status() != StatusCode::OK {
            return Err(JwksError::status(response.status()));
        }
        if response.body().len() > max {
            return Err(JwksError::too_large(max));
        }
        Ok(response)
    }

    async fn discover(&self) -> Result<Uri, JwksError> {
        #[derive(Deserialize)]
        struct Metadata {
            issuer: String,
            jwks_uri: String,
        }
        Counters::bump(&self.counters.discoveries);
        let response = self.get(&self.config.location).await?;
        let metadata: Metadata =
            serde_json::from_slice(response.body()).map_err(JwksError::invalid)?;
        let expected = self.config.issuer.as_deref().unwrap_or_default();
        if metadata.issuer != expected {
            return Err(
                JwksError::new(JwksErrorKind::IssuerMismatch).with_detail(format!(
                    "expected {expected:?}, the discovery document names {:?}",
                    metadata.issuer.chars().take(200).collect::<String>()
                )),
            );
        }
        parse_url(&metadata.jwks_uri, self.config.allow_http)
    }

    async fn fetch(&self) -> Result<(KeySet, Option<Duration>), JwksError> {
        let uri = match self.config.mode {
            Mode::Jwks => self.config.location.clone(),
            Mode::OpenId | Mode::OAuth => {
                let known = self.lock().jwks_uri.clone();
                match known {
                    Some(uri) => uri,
                    None => {
                        let uri = self.discover().await?;
                        self.lock().jwks_uri = Some(uri.clone());
                        uri
                    }
                }
            }
        };
        Counters::bump(&self.counters.fetches);
        let result = async {
            let response = self.get(&uri).await?;
            let set = parse_key_set(response.body(), self.config.rules)?;
            Ok((set, max_age(response.headers())))
        }
        .await;
        if result.is_err() && self.config.mode != Mode::Jwks {
            // The provider may have moved its keys: discover again next time.
            self.lock().jwks_uri = None;
        }
        result
    }

    fn finish(&self, result: Result<(KeySet, Option<Duration>), JwksError>) -> Outcome {
        let now = self.clock.monotonic();
        let mut state = self.lock();
        state.flight = None;
        let outcome = match result {
            Ok((set, max_age)) => {
                let ttl = max_age.map_or(self.config.ttl, |a| {
                    a.clamp(self.config.min_ttl, self.config.max_ttl)
                });
                // Refresh at 80-90 % of the TTL.
                let ahead = ttl / 10 + jitter(ttl / 10);
                state.next_refresh = now + ttl.saturating_sub(ahead);
                state.failures = 0;
                state.last_error = None;
                let changed =
                    !self.loaded.load(Ordering::Acquire) || self.keys.load().digest != set.digest;
                self.counters.keys.store(set.len(), Ordering::Relaxed);
                self.counters
                    .skipped_keys
                    .store(set.skipped, Ordering::Relaxed);
                if changed {
                    Counters::bump(&self.counters.key_set_changes);
                    let kids: Vec<&str> = set.kids().collect();
                    tracing::info!(url = %self.config.location, keys = set.len(), skipped = set.skipped, kids = ?kids, "JWK Set changed");
                } else {
                    tracing::debug!(url = %self.config.location, keys = set.len(), "JWK Set unchanged");
                }
                self.keys.store(Arc::new(set));
                self.loaded.store(true, Ordering::Release);
                self.last_ok.store(true, Ordering::Release);
                Ok(())
            }
            Err(error) => {
                state.failures = state.failures.saturating_add(1);
                let (initial, max) = self.config.backoff;
                let exp = 1u32 << (state.failures - 1).min(20);
                let base = initial.saturating_mul(exp).min(max);
                let delay = base / 2 + jitter(base / 2);
                state.next_refresh = now + delay;
                state.last_error = Some(error.clone());
                self.last_ok.store(false, Ordering::Release);
                Counters::bump(&self.counters.failures);
                tracing::warn!(
                    url = %self.config.location, %error, failures = state.failures,
                    retry_in = ?delay, loaded = self.loaded.load(Ordering::Relaxed),
                    "JWK Set fetch failed; previous keys (if any) keep serving"
                );
                Err(error)
            }
        };
        self.flight_active.store(false, Ordering::Release);
        drop(state);
        self.wake.notify_one();
        outcome
    }
}

async fn await_flight(mut flight: Flight) -> Outcome {
    match flight.wait_for(Option::is_some).await {
        Ok(outcome) => outcome
            .clone()
            .unwrap_or_else(|| Err(JwksError::new(JwksErrorKind::Aborted))),
        Err(_) => Err(JwksError::new(JwksErrorKind::Aborted)),
    }
}

/// The background task: refreshes when due, stops when the source is gone.
async fn schedule<F: JwksFetcher>(source: Weak<Inner<F>>, wake: Arc<Notify>) {
    {
        loop {
            let wait = {
                let Some(inner) = source.upgrade() else {
                    return;
                };
                let next = inner.lock().next_refresh;
                next.saturating_sub(inner.clock.monotonic())
            };
            if !wait.is_zero() {
                // Woken early by every finished fetch (the schedule moved) and by the drop.
                let _ = tokio::time::timeout(wait, wake.notified()).await;
                continue;
            }
            let flight = {
                let Some(inner) = source.upgrade() else {
                    return;
                };
                let mut state = inner.lock();
                if state.next_refresh > inner.clock.monotonic() {
                    continue;
                }
                inner.join_or_start(&mut state, Trigger::Schedule)
            };
            let _ = await_flight(flight).await;
        }
    }
}

/// `max-age` of `Cache-Control` (`no-store`/`no-cache` count as 0, clamped up later).
fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut found = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, arg) = directive.split_once('=').unwrap_or((directive, ""));
            let name = name.trim();
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return Some(Duration::ZERO);
            }
            if name.eq_ignore_ascii_case("max-age") {
                let secs = arg.trim().trim_matches('"');
                if let Ok(secs) = secs.parse::<u64>() {
                    found = Some(Duration::from_secs(secs));
                } else if !secs.is_empty() && secs.bytes().all(|b| b.is_ascii_digit()) {
                    found = Some(Duration::MAX);
                }
            }
        }
    }
    found
}

/// A random duration in `[0, max]`, from the OS generator (none if it fails).
fn jitter(max: Duration) -> Duration {
    let Ok(random) = getrandom::u64() else {
        return Duration::ZERO;
    };
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    match nanos.checked_add(1) {
        Some(range) => Duration::from_nanos(random % range),
        None => Duration::from_nanos(random),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        let mut h = HeaderMap::new();
        assert_eq!(max_age(&h), None);
        h.insert(
            CACHE_CONTROL,
            "public, max-age=600, must-revalidate".parse().unwrap(),
        );
        assert_eq!(max_age(&h), Some(Duration::from_secs(600)));
        h.insert(CACHE_CONTROL, "MAX-AGE=\"30\"".parse().unwrap());
        assert_eq!(max_age(&h), Some(Duration::from_secs(30)));
        h.insert(CACHE_CONTROL, "no-store".parse().unwrap());
        assert_eq!(max_age(&h), Some(Duration::ZERO));
        h.insert(
            CACHE_CONTROL,
            "max-age=99999999999999999999999".parse().unwrap(),
        );
        assert_eq!(max_age(&h), Some(Duration::MAX));
        h.insert(CACHE_CONTROL, "max-age=-1".parse().unwrap());
        assert_eq!(max_age(&h), None);
    }

    #[test]
    fn urls_are_checked() {
        assert!(parse_url("https://idp.example/keys", false).is_ok());
        assert_eq!(
            parse_url("http://idp.example/keys", false)
                .unwrap_err()
                .kind(),
            JwksErrorKind::InsecureUrl
        );
        assert!(parse_url("http://127.0.0.1:1/keys", true).is_ok());
        assert!(parse_url("/keys", true).is_err());
        assert!(parse_url("ftp://idp.example/", true).is_err());
        assert!(parse_url("https://user:pw@idp.example/", true).is_err());
    }

    #[test]
    fn discovery_urls_follow_oidc_and_rfc_8414() {
        let iss: Uri = "https://idp.example/tenant/".parse().unwrap();
        assert_eq!(
            metadata_url(&iss, Mode::OpenId).unwrap(),
            "https://idp.example/tenant/.well-known/openid-configuration"
        );
        assert_eq!(
            metadata_url(&iss, Mode::OAuth).unwrap(),
            "https://idp.example/.well-known/oauth-authorization-server/tenant"
        );
        let root: Uri = "https://idp.example".parse().unwrap();
        assert_eq!(
            metadata_url(&root, Mode::OpenId).unwrap(),
            "https://idp.example/.well-known/openid-configuration"
        );
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..100 {
            assert!(jitter(Duration::from_millis(10)) <= Duration::from_millis(10));
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }

    fn _assert_send_sync() {
        fn is<T: Send + Sync>() {}
        is::<JwksKeySource>();
        is::<JwksError>();
    }
}
