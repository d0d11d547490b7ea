//! Where the authenticator finds verification keys: the [`KeySource`] seam.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use jsonwebtoken::Algorithm;

use super::keys::VerificationKey;
use crate::error::{ConfigError, Error};

/// What the authenticator asks a [`KeySource`]: the issuer the token claims, its `kid` and its
/// `alg`. All three come from the token *before* its signature is verified: they are lookup
/// keys, never trusted (RFC 8725 §3.10). The authenticator checks the key it gets against the
/// token's `alg` itself.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct KeyQuery<'a> {
    /// The configured issuer whose keys are wanted (equal to the token's `iss`).
    pub issuer: &'a str,
    /// The token's `kid` header, if any.
    pub kid: Option<&'a str>,
    /// The token's `alg` header.
    pub alg: Algorithm,
}

impl<'a> KeyQuery<'a> {
    /// A query, for your own tests of a `KeySource`.
    #[must_use]
    pub fn new(issuer: &'a str, kid: Option<&'a str>, alg: Algorithm) -> Self {
        Self { issuer, kid, alg }
    }
}

/// The future of a key lookup that has to wait (a JWKS refetch on an unknown `kid`).
pub type KeyFuture =
    Pin<Box<dyn Future<Output = Result<Option<Arc<VerificationKey>>, Error>> + Send + 'static>>;

/// The answer of a [`KeySource`].
pub enum KeyLookup {
    /// Answered from memory: `Ok(Some(key))` found, `Ok(None)` no such key (the token is
    /// refused with `401`), `Err` the source cannot answer (`503`, fail closed).
    Ready(Result<Option<Arc<VerificationKey>>, Error>),
    /// The answer needs I/O.
    Pending(KeyFuture),
}

impl fmt::Debug for KeyLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ready(found) => f.debug_tuple("Ready").field(found).finish(),
            Self::Pending(_) => f.write_str("Pending(..)"),
        }
    }
}

/// Finds the key for a token. [`StaticKeys`] is the in-memory implementation; a remote JWKS
/// source is another.
///
/// On the request path: a hit must answer [`KeyLookup::Ready`] from an immutable snapshot,
/// without allocating or waiting on a lock; only a miss that needs I/O returns
/// [`KeyLookup::Pending`]. A source may serve several issuers (it gets the issuer in the
/// query) but must never return one issuer's key for another's.
pub trait KeySource: Send + Sync + fmt::Debug + 'static {
    /// Finds the key for `query`.
    fn lookup(&self, query: &KeyQuery<'_>) -> KeyLookup;
}

impl<S: KeySource + ?Sized> KeySource for Arc<S> {
    fn lookup(&self, query: &KeyQuery<'_>) -> KeyLookup {
        (**self).lookup(query)
    }
}

/// Copies of each key, so that threads cloning "the same" key touch different reference counts:
/// one shared `Arc` would make every lookup on every core write one cache line.
pub(crate) const STRIPES: usize = 8;

/// One key and its copies ([`STRIPES`]).
#[derive(Debug)]
pub(crate) struct Striped([Arc<VerificationKey>; STRIPES]);

impl Striped {
    pub(crate) fn new(key: &Arc<VerificationKey>) -> Self {
        Self(std::array::from_fn(|i| {
            if i == 0 {
                Arc::clone(key)
            } else {
                Arc::new(VerificationKey::clone(key))
            }
        }))
    }

    /// The copy for stripe `stripe` ([`thread_stripe`](crate::stripe::thread_stripe)).
    #[inline]
    pub(crate) fn get(&self, stripe: usize) -> &Arc<VerificationKey> {
        &self.0[stripe % STRIPES]
    }

    /// The key (any copy).
    pub(crate) fn key(&self) -> &VerificationKey {
        &self.0[0]
    }
}

/// A fixed set of keys for one issuer.
///
/// With one key, a token may omit `kid`; if both carry one they must match. With several
/// keys, every key must have a distinct `kid` and a token must name one: a token without
/// `kid` is refused rather than tried against each key.
///
/// Each key is held in a few copies, one per group of threads, so that verifying on many
/// cores at once does not make every core write one shared reference count.
#[derive(Clone, Debug)]
pub struct StaticKeys {
    keys: Arc<[Striped]>,
}

impl StaticKeys {
    /// A source over `keys`.
    ///
    /// # Errors
    ///
    /// When `keys` is empty, or holds several keys of which one lacks a `kid` or two share one.
    pub fn new(keys: impl IntoIterator<Item = VerificationKey>) -> Result<Self, ConfigError> {
        let keys: Vec<Arc<VerificationKey>> = keys.into_iter().map(Arc::new).collect();
        if keys.is_empty() {
            return Err(ConfigError::new("a key source needs at least one key"));
        }
        if keys.len() > 1 {
            for (i, key) in keys.iter().enumerate() {
                let Some(kid) = key.kid() else {
                    return Err(ConfigError::new(
                        "with several keys, every key needs a `kid` (VerificationKey::with_kid)",
                    ));
                };
                if keys[..i].iter().any(|k| k.kid() == Some(kid)) {
                    return Err(ConfigError::new(format!("duplicate key id {kid:?}")));
                }
            }
        }
        Ok(Self {
            keys: keys.iter().map(Striped::new).collect(),
        })
    }

    /// The keys.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &VerificationKey> {
        self.keys.iter().map(Striped::key)
    }

    fn find(&self, kid: Option<&str>) -> Option<&Striped> {
        match (&*self.keys, kid) {
            ([only], None) => Some(only),
            ([only], Some(kid)) => match only.key().kid() {
                None => Some(only),
                Some(own) if own == kid => Some(only),
                Some(_) => None,
            },
            (_, None) => None,
            (keys, Some(kid)) => keys.iter().find(|k| k.key().kid() == Some(kid)),
        }
    }
}

impl KeySource for StaticKeys {
    fn lookup(&self, query: &KeyQuery<'_>) -> KeyLookup {
        let found = self
            .find(query.kid)
            .map(|key| Arc::clone(key.get(crate::stripe::thread_stripe())));
        KeyLookup::Ready(Ok(found))
    }
}
