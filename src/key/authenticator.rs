//! The API key authenticator.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http::request::Parts;
use pin_project_lite::pin_project;
use zeroize::Zeroizing;

use super::format::{KeyFormat, KeyParseError};
use super::hash::KeyHasher;
use super::{KeyRecord, KeyStore, KeyStoreWrite, LAST_USE_INTERVAL_SECS, Lookup, make_room};
use crate::authn::{Attempt, Authenticator, DEFAULT_TIMEOUT};
use crate::clock::{Clock, SystemClock};
use crate::error::{ConfigError, Error, ErrorKind};
use crate::extract::{CredentialExtractor, CredentialSource, Deferred, is_b64token};
use crate::principal::Principal;
use crate::response::Scheme;

/// The header API keys are read from by default: `X-API-Key`.
pub const DEFAULT_KEY_HEADER: &str = "x-api-key";

type LastUseHook = Arc<dyn Fn(&str, u64) + Send + Sync>;

/// Which keys this process recorded a use of lately, so that it writes at most one use per key
/// per [`LAST_USE_INTERVAL_SECS`]. A record's own mark does that for a store that hands out the
/// same record every time (memory, a cache); a database store builds a fresh record for every
/// lookup, and a burst of requests would otherwise each start a write until the first one
/// lands.
///
/// Bounded: a shard that fills up forgets the keys whose interval has passed, and if too few
/// have, some recent ones too (each of those may then be written once more).
struct LastUseGate {
    shards: [Mutex<HashMap<Box<str>, u64>>; LAST_USE_SHARDS],
}

const LAST_USE_SHARDS: usize = 16;
const LAST_USE_PER_SHARD: usize = 4096;

impl LastUseGate {
    fn new() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::default()),
        }
    }

    /// `true` when a use of `id` at `now` is to be written.
    fn claim(&self, id: &str, now: u64) -> bool {
        let recent = |last: u64| now < last.saturating_add(LAST_USE_INTERVAL_SECS);
        // Key ids are random base62, so their last byte spreads them evenly.
        let shard = usize::from(id.as_bytes().last().copied().unwrap_or(0)) % LAST_USE_SHARDS;
        let mut written = self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = written.get_mut(id) {
            if recent(*last) {
                return false;
            }
            *last = now;
            return true;
        }
        make_room(&mut written, LAST_USE_PER_SHARD, |last| recent(*last));
        written.insert(id.into(), now);
        true
    }
}

/// Authenticates API keys against a [`KeyStore`].
///
/// Reads `X-API-Key` and `Authorization: Bearer` by default (either, not both: two are `400`).
/// Only credentials with the format's prefix are its kind; anything else (a JWT, another
/// system's key) counts as absent, so another authenticator may take it. A wrong checksum is
/// refused before any store lookup.
///
/// See the [module docs](crate::key) for an example.
pub struct ApiKeyAuthenticator<S, C = SystemClock> {
    store: S,
    format: KeyFormat,
    hasher: KeyHasher,
    extractor: CredentialExtractor,
    clock: C,
    timeout: Duration,
    last_use: Option<LastUseHook>,
}

impl<S: KeyStore> ApiKeyAuthenticator<S> {
    /// Keys of `format`, hashed with `hasher`, looked up in `store`.
    pub fn new(format: KeyFormat, hasher: KeyHasher, store: S) -> Self {
        Self {
            store,
            format,
            hasher,
            extractor: CredentialExtractor::new([
                CredentialSource::api_key_header(),
                CredentialSource::bearer(),
            ]),
            clock: SystemClock,
            timeout: DEFAULT_TIMEOUT,
            last_use: None,
        }
    }
}

impl<S: KeyStore, C: Clock + Clone> ApiKeyAuthenticator<S, C> {
    /// Reads time (key expiry, last use) from `clock`.
    pub fn with_clock<C2: Clock + Clone>(self, clock: C2) -> ApiKeyAuthenticator<S, C2> {
        ApiKeyAuthenticator {
            store: self.store,
            format: self.format,
            hasher: self.hasher,
            extractor: self.extractor,
            clock,
            timeout: self.timeout,
            last_use: self.last_use,
        }
    }

    /// Reads keys from `sources`, in order, instead of `X-API-Key` and `Bearer`.
    ///
    /// # Security
    ///
    /// A [`CredentialSource::query`] puts keys into URLs, which end up in logs; see its docs.
    #[must_use]
    pub fn with_sources(mut self, sources: impl IntoIterator<Item = CredentialSource>) -> Self {
        let max = self.extractor.max_len();
        self.extractor = CredentialExtractor::new(sources);
        self.extractor = self
            .extractor
            .clone()
            .with_max_len(max)
            .unwrap_or(self.extractor);
        self
    }

    /// Bounds a store lookup. Defaults to 2 s; past it the request is refused with `503`.
    ///
    /// The bound is a tokio timer, started only for a lookup that has to wait
    /// ([`Lookup::Pending`]). It needs the request to run on a tokio runtime with its time
    /// driver, as `#[tokio::main]`, `Runtime::new` and `Builder::enable_all` give; tokio panics
    /// on a runtime built without `enable_time`. Outside any tokio runtime the lookup is not
    /// bounded: bound it in the store's own future then (`PostgresKeyStore` does).
    ///
    /// # Errors
    ///
    /// When `timeout` is zero.
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError::new("store timeout must be positive"));
        }
        self.timeout = timeout;
        Ok(self)
    }

    /// Records each key's last use in `writer`, at most once a minute per key in this process
    /// (also with a store that builds a fresh record for every lookup, as a database store
    /// does), on a background task (off the request path). Needs a tokio runtime; without one,
    /// uses are not recorded.
    #[must_use]
    pub fn track_last_use<W>(mut self, writer: W) -> Self
    where
        W: KeyStoreWrite + Clone,
    {
        let gate = LastUseGate::new();
        self.last_use = Some(Arc::new(move |id: &str, at: u64| {
            let Ok(handle) = tokio::runtime::Handle::try_current() else {
                return;
            };
            if !gate.claim(id, at) {
                return;
            }
            let writer = writer.clone();
            let id = id.to_owned();
            handle.spawn(async move {
                if let Err(error) = writer.record_last_use(&id, at).await {
                    tracing::debug!(key_id = %id, %error, "recording API key use failed");
                }
            });
        }));
        self
    }

    /// The key format.
    pub fn format(&self) -> &KeyFormat {
        &self.format
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

struct Verifier<C> {
    hasher: KeyHasher,
    clock: C,
    last_use: Option<LastUseHook>,
}

impl<C: Clock> Verifier<C> {
    fn finish(
        &self,
        id: &str,
        secret: &str,
        scheme: Scheme,
        found: Result<Option<Arc<KeyRecord>>, Error>,
    ) -> Result<Principal, Error> {
        check_key(
            &self.hasher,
            &self.clock,
            self.last_use.as_ref(),
            id,
            secret,
            scheme,
            found,
        )
    }
}

/// Verifies the presented secret against the record and the record's lifecycle.
fn check_key<C: Clock>(
    hasher: &KeyHasher,
    clock: &C,
    last_use: Option<&LastUseHook>,
    id: &str,
    secret: &str,
    scheme: Scheme,
    found: Result<Option<Arc<KeyRecord>>, Error>,
) -> Result<Principal, Error> {
    let reject = |kind: ErrorKind| Error::new(kind).with_scheme(scheme);
    let record = match found {
        Err(error) => return Err(error.with_scheme(scheme)),
        Ok(None) => return Err(reject(ErrorKind::UnknownCredential)),
        Ok(Some(record)) if record.id != id => return Err(reject(ErrorKind::UnknownCredential)),
        Ok(Some(record)) => record,
    };
    match hasher.verify(secret.as_bytes(), &record.hash) {
        Some(true) => {}
        Some(false) => return Err(reject(ErrorKind::InvalidCredential)),
        None => {
            tracing::error!(
                key_id = id,
                version = ?record.hash.version(),
                "API key hashed with a pepper this server does not have"
            );
            return Err(Error::unavailable("API key pepper not configured").with_scheme(scheme));
        }
    }
    let now = clock.unix_seconds();
    record.check_usable(now).map_err(reject)?;
    if let Some(hook) = last_use
        && record.claim_last_use(now, LAST_USE_INTERVAL_SECS)
    {
        hook(id, now);
    }
    Ok(record.principal())
}

impl<S, C> Authenticator for ApiKeyAuthenticator<S, C>
where
    S: KeyStore,
    C: Clock + Clone,
{
    type Future = ApiKeyFuture<S::Future, C>;

    fn authenticate(&self, request: &Parts) -> Attempt<Self::Future> {
        let found = self
            .extractor
            .extract_deferred(request, |value| self.format.recognises_bytes(value));
        let (value, scheme) = match found {
            Deferred::Absent => return Attempt::NoCredential,
            Deferred::Mine { value, scheme } => (value, scheme),
            Deferred::Full => {
                let found = self
                    .extractor
                    .extract_matching(request, |value| self.format.recognises(value));
                match found {
                    Err(error) => return Attempt::Rejected(error),
                    Ok(None) => return Attempt::NoCredential,
                    Ok(Some(credential)) => {
                        let scheme = credential.scheme();
                        let value = match credential.into_value() {
                            Cow::Borrowed(value) => Cow::Borrowed(value.as_bytes()),
                            Cow::Owned(value) => Cow::Owned(value.into_bytes()),
                        };
                        (value, scheme)
                    }
                }
            }
        };
        // Recognised by the extractor's `is_mine` on either path.
        let parsed = match self.format.parse_recognised(&value) {
            Ok(parsed) => parsed,
            // Every byte of a key that fails only its checksum is a letter, a digit or `_`:
            // a `b64token`, as the extractor requires.
            Err(KeyParseError::Checksum) => {
                return Attempt::Rejected(
                    Error::new(ErrorKind::ChecksumMismatch).with_scheme(scheme),
                );
            }
            // The syntax check the extractor left to the key's own grammar.
            Err(_) if !is_b64token(&value) => {
                return Attempt::Rejected(
                    Error::new(ErrorKind::MalformedCredential).with_scheme(scheme),
                );
            }
            Err(_) => {
                return Attempt::Rejected(
                    Error::new(ErrorKind::InvalidCredential).with_scheme(scheme),
                );
            }
        };
        match self.store.lookup(parsed.id()) {
            Lookup::Ready(found) => {
                match check_key(
                    &self.hasher,
                    &self.clock,
                    self.last_use.as_ref(),
                    parsed.id(),
                    parsed.secret(),
                    scheme,
                    found,
                ) {
                    Ok(principal) => Attempt::Authenticated(principal),
                    Err(error) => Attempt::Rejected(error),
                }
            }
            Lookup::Pending(lookup) => {
                let deadline = tokio::runtime::Handle::try_current()
                    .ok()
                    .map(|_| tokio::time::sleep(self.timeout));
                Attempt::Pending(ApiKeyFuture {
                    lookup,
                    deadline,
                    timeout: self.timeout,
                    pending: Some(PendingCheck {
                        id: parsed.id().into(),
                        secret: Zeroizing::new(parsed.secret().to_owned()),
                        scheme,
                        verifier: Verifier {
                            hasher: self.hasher.clone(),
                            clock: self.clock.clone(),
                            last_use: self.last_use.clone(),
                        },
                    }),
                })
            }
        }
    }

    fn sources(&self) -> Vec<CredentialSource> {
        self.extractor.sources().to_vec()
    }
}

struct PendingCheck<C> {
    id: Box<str>,
    secret: Zeroizing<String>,
    scheme: Scheme,
    verifier: Verifier<C>,
}

pin_project! {
    /// The future of an [`ApiKeyAuthenticator`] whose store has to wait: the lookup, bounded by
    /// the timeout, then the secret check.
    ///
    /// Polled again after it finished, it stays pending rather than panicking (as
    /// `futures::future::Fuse` does).
    pub struct ApiKeyFuture<F, C> {
        #[pin]
        lookup: F,
        #[pin]
        deadline: Option<tokio::time::Sleep>,
        timeout: Duration,
        pending: Option<PendingCheck<C>>,
    }
}

impl<F, C> fmt::Debug for ApiKeyFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyFuture")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<F, C> Future for ApiKeyFuture<F, C>
where
    F: Future<Output = Result<Option<Arc<KeyRecord>>, Error>>,
    C: Clock,
{
    type Output = Result<Principal, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if this.pending.is_none() {
            // Finished already: the lookup future must not be polled again.
            return Poll::Pending;
        }
        let found = match this.lookup.poll(cx) {
            Poll::Ready(found) => found,
            Poll::Pending => {
                if let Some(deadline) = this.deadline.as_mut().as_pin_mut()
                    && deadline.poll(cx).is_ready()
                {
                    let scheme = this.pending.take().map(|p| p.scheme);
                    let error = Error::timeout(*this.timeout);
                    return Poll::Ready(Err(match scheme {
                        Some(s) => error.with_scheme(s),
                        None => error,
                    }));
                }
                return Poll::Pending;
            }
        };
        let Some(check) = this.pending.take() else {
            return Poll::Pending;
        };
        Poll::Ready(
            check
                .verifier
                .finish(&check.id, &check.secret, check.scheme, found),
        )
    }
}

impl<S: Clone, C: Clone> Clone for ApiKeyAuthenticator<S, C> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            format: self.format.clone(),
            hasher: self.hasher.clone(),
            extractor: self.extractor.clone(),
            clock: self.clock.clone(),
            timeout: self.timeout,
            last_use: self.last_use.clone(),
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for ApiKeyAuthenticator<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyAuthenticator")
            .field("store", &self.store)
            .field("format", &self.format)
            .field("hasher", &self.hasher)
            .field("extractor", &self.extractor)
            .field("clock", &self.clock)
            .field("timeout", &self.timeout)
            .field("tracks_last_use", &self.last_use.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_lets_one_use_per_key_per_interval_through() {
        let gate = LastUseGate::new();
        assert!(gate.claim("abc", 1_000));
        assert!(!gate.claim("abc", 1_000));
        assert!(!gate.claim("abc", 1_000 + LAST_USE_INTERVAL_SECS - 1));
        assert!(gate.claim("xyz", 1_001), "another key");
        assert!(gate.claim("abc", 1_000 + LAST_USE_INTERVAL_SECS));
        assert!(!gate.claim("abc", 1_000 + LAST_USE_INTERVAL_SECS));
    }

    #[test]
    fn the_gate_stays_bounded() {
        let gate = LastUseGate::new();
        let len = |gate: &LastUseGate| {
            gate.shards
                .iter()
                .map(|s| s.lock().unwrap().len())
                .sum::<usize>()
        };
        // Ids ending in the same byte share a shard: fill one past its bound with recent uses.
        for i in 0..=LAST_USE_PER_SHARD {
            assert!(gate.claim(&format!("{i:08}a"), 10));
        }
        assert!(len(&gate) <= LAST_USE_PER_SHARD);
        // A full shard of old uses forgets them and keeps the new one.
        let gate = LastUseGate::new();
        for i in 0..LAST_USE_PER_SHARD {
            assert!(gate.claim(&format!("{i:08}a"), 10));
        }
        assert!(gate.claim("fresh-a", 10 + LAST_USE_INTERVAL_SECS));
        assert_eq!(len(&gate), 1);
        assert!(!gate.claim("fresh-a", 10 + LAST_USE_INTERVAL_SECS));
    }
}
