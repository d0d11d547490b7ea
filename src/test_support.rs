//! Helpers for your own tests (feature `test-util`): a static authenticator and principals.
//!
//! ```
//! use credentialflow::test_support::{StaticAuthenticator, principal};
//!
//! let alice = principal("alice").scopes(["orders:read"]).build();
//! let authenticator = StaticAuthenticator::bearer().with_token("token-for-alice", alice);
//! # let _ = authenticator;
//! ```
//!
//! Not for production: tokens are held in memory as given.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::request::Parts;
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::authn::{Attempt, Authenticator};
use crate::error::{Error, ErrorKind};
use crate::extract::{CredentialExtractor, CredentialSource};
use crate::principal::{CredentialKind, Principal, PrincipalBuilder};

/// The credential kind of principals made by [`principal`]: `Custom("test")`.
pub const TEST_KIND: CredentialKind = CredentialKind::Custom("test");

/// Starts a principal for `subject` with kind [`TEST_KIND`] and credential id
/// `"test:<subject>"`.
pub fn principal(subject: &str) -> PrincipalBuilder {
    Principal::builder(subject, TEST_KIND).credential_id(format!("test:{subject}"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Immediate,
    Deferred,
    Unavailable,
    Hang,
}

/// An authenticator with a fixed table of tokens. Tokens are compared in constant time.
///
/// By default it answers synchronously; [`deferred`](Self::deferred) answers through a future
/// (as a store lookup would), [`unavailable`](Self::unavailable) fails every presented
/// credential as a broken backend would (`503`), and [`hanging`](Self::hanging) never answers
/// (for timeout tests).
#[derive(Clone)]
pub struct StaticAuthenticator {
    extractor: CredentialExtractor,
    tokens: Vec<(Box<[u8]>, Principal)>,
    answer: Answer,
    prefix: Option<Box<str>>,
}

impl StaticAuthenticator {
    /// Reads `Authorization: Bearer`.
    #[must_use]
    pub fn bearer() -> Self {
        Self::new(CredentialExtractor::new([CredentialSource::bearer()]))
    }

    /// Reads `X-API-Key`.
    #[must_use]
    pub fn api_key_header() -> Self {
        Self::new(CredentialExtractor::new([
            CredentialSource::api_key_header(),
        ]))
    }

    /// Reads wherever `extractor` says.
    #[must_use]
    pub fn new(extractor: CredentialExtractor) -> Self {
        Self {
            extractor,
            tokens: Vec::new(),
            answer: Answer::Immediate,
            prefix: None,
        }
    }

    /// Accepts `token` as `principal`.
    #[must_use]
    pub fn with_token(mut self, token: &str, principal: Principal) -> Self {
        self.tokens.push((token.as_bytes().into(), principal));
        self
    }

    /// Only credentials starting with `prefix` are this authenticator's kind; others count as
    /// absent (as an API-key authenticator ignores a JWT).
    #[must_use]
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Answers through a future instead of synchronously.
    #[must_use]
    pub fn deferred(mut self) -> Self {
        self.answer = Answer::Deferred;
        self
    }

    /// Every presented credential fails as if the backend were down: `503`.
    #[must_use]
    pub fn unavailable(mut self) -> Self {
        self.answer = Answer::Unavailable;
        self
    }

    /// Every presented credential waits forever.
    #[must_use]
    pub fn hanging(mut self) -> Self {
        self.answer = Answer::Hang;
        self
    }

    fn lookup(&self, presented: &[u8]) -> Option<Principal> {
        // Constant time in the token contents: every entry is compared.
        let mut hit: Option<usize> = None;
        for (i, (token, _)) in self.tokens.iter().enumerate() {
            let eq = token.as_ref().ct_eq(presented);
            let candidate = u32::try_from(i).unwrap_or(u32::MAX);
            let current = hit.map_or(u32::MAX, |h| u32::try_from(h).unwrap_or(u32::MAX));
            let chosen = u32::conditional_select(&current, &candidate, eq);
            if chosen != u32::MAX {
                hit = Some(chosen as usize);
            }
        }
        hit.and_then(|i| self.tokens.get(i)).map(|(_, p)| p.clone())
    }
}

impl fmt::Debug for StaticAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticAuthenticator")
            .field("extractor", &self.extractor)
            .field("tokens", &self.tokens.len())
            .field("answer", &self.answer)
            .finish()
    }
}

/// The future of [`StaticAuthenticator`].
#[derive(Debug)]
pub struct StaticFuture {
    result: Option<Result<Principal, Error>>,
}

impl Future for StaticFuture {
    type Output = Result<Principal, Error>;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.result.take() {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

impl Authenticator for StaticAuthenticator {
    type Future = StaticFuture;

    fn authenticate(&self, request: &Parts) -> Attempt<Self::Future> {
        let found = self.extractor.extract_matching(request, |value| {
            self.prefix.as_deref().is_none_or(|p| value.starts_with(p))
        });
        let credential = match found {
            Err(e) => return Attempt::Rejected(e),
            Ok(None) => return Attempt::NoCredential,
            Ok(Some(c)) => c,
        };
        let result = match self.answer {
            Answer::Unavailable => Err(Error::unavailable(
                "static authenticator set to unavailable",
            )),
            Answer::Hang => return Attempt::Pending(StaticFuture { result: None }),
            Answer::Immediate | Answer::Deferred => {
                self.lookup(credential.value().as_bytes()).ok_or_else(|| {
                    Error::new(ErrorKind::UnknownCredential).with_scheme(credential.scheme())
                })
            }
        };
        match (self.answer, result) {
            (Answer::Immediate, Ok(p)) => Attempt::Authenticated(p),
            (Answer::Immediate, Err(e)) => Attempt::Rejected(e),
            (_, result) => Attempt::Pending(StaticFuture {
                result: Some(result),
            }),
        }
    }

    fn sources(&self) -> Vec<CredentialSource> {
        self.extractor.sources().to_vec()
    }
}
