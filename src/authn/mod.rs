//! Authentication: turning a request's credential into a [`Principal`].
//!
//! An [`Authenticator`] looks at the request head and answers one of four things (an
//! [`Attempt`]): no credential of my kind here / here is the `Principal` / a credential of my kind
//! was presented and it is bad / here is a future that will tell (a store lookup). A future may
//! also fail with an *unavailable* error ([`Error::unavailable`], [`Error::timeout`]): the
//! backend could not answer, and the request is refused with `503` and `Retry-After`, in every
//! mode, never allowed.
//!
//! One [`Authenticate`] layer drives any authenticator:
//!
//! | Mode | no credential | bad credential | backend down |
//! |---|---|---|---|
//! | [required](AuthenticateLayer::new) (default) | 401 | 401 | 503 |
//! | [optional](AuthenticateLayer::optional) | anonymous `Principal` | 401 | 503 |
//! | [`dangerous_invalid_as_anonymous`](AuthenticateLayer::dangerous_invalid_as_anonymous) | anonymous | anonymous | 503 |
//!
//! Combine authenticators with [`AuthenticatorExt`]: [`or`](AuthenticatorExt::or) accepts the
//! first kind of credential present (an API key *or* a bearer token; two kinds in one request are
//! `400`), [`and`](AuthenticatorExt::and) requires every one, and
//! [`timeout`](AuthenticatorExt::timeout) bounds a slow backend.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use credentialflow::authn::AuthenticateLayer;
//! use credentialflow::test_support::StaticAuthenticator;
//! use credentialflow::{CredentialKind, Principal};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let authenticator = StaticAuthenticator::bearer()
//!     .with_token("s3cr3t-token", Principal::builder("alice", CredentialKind::Custom("static")).build());
//!
//! let app = Router::new()
//!     .route("/me", get(|principal: Principal| async move { principal.subject().to_owned() }))
//!     .layer(AuthenticateLayer::new(authenticator));
//!
//! let ok = app.clone()
//!     .oneshot(Request::get("/me").header("authorization", "Bearer s3cr3t-token").body(axum::body::Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(ok.status(), StatusCode::OK);
//!
//! let denied = app
//!     .oneshot(Request::get("/me").body(axum::body::Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(denied.headers()["www-authenticate"], r#"Bearer realm="api""#);
//! # }
//! ```
//!
//! [`Principal`]: crate::Principal

mod combinators;
mod future;
mod layer;
mod service;
mod stats;

use std::future::Future;
use std::sync::Arc;

use http::request::Parts;

pub use self::combinators::{ALSO_AUTHENTICATED_ATTRIBUTE, And, AndFuture, Or, OrFuture};
#[cfg(feature = "tokio")]
pub use self::combinators::{DEFAULT_TIMEOUT, Timeout, TimeoutFuture};
pub use self::future::ResponseFuture;
pub use self::layer::AuthenticateLayer;
pub use self::service::Authenticate;
pub use self::stats::AuthStats;

use crate::error::Error;
use crate::extract::CredentialSource;
use crate::principal::Principal;

/// What an [`Authenticator`] makes of a request, decided synchronously.
#[derive(Debug)]
pub enum Attempt<F> {
    /// No credential of this authenticator's kind (absent, or in another format: a JWT where an
    /// API key was expected). Another authenticator may try.
    NoCredential,
    /// Verified without waiting.
    Authenticated(Principal),
    /// A credential of this kind was presented and is refused (malformed, unknown, expired…), or
    /// the backend is unavailable (see [`Error::unavailable`]).
    Rejected(Error),
    /// Verification needs to wait (a store lookup): the future answers.
    Pending(F),
}

/// Turns a request's credential into a [`Principal`].
///
/// `authenticate` runs synchronously on the request head and should only look: parse the
/// credential, answer from memory when it can, and return a future for anything that has to
/// wait. The future must not borrow the request; copy out what it needs (an id, not the secret,
/// where possible).
///
/// ```
/// use std::future::Ready;
/// use credentialflow::authn::{Attempt, Authenticator};
/// use credentialflow::extract::{CredentialExtractor, CredentialSource};
/// use credentialflow::{CredentialKind, Error, ErrorKind, Principal};
///
/// /// Accepts `X-Service-Token: <token>` for a single shared service token.
/// struct ServiceToken {
///     extractor: CredentialExtractor,
///     expected: String,
/// }
///
/// impl Authenticator for ServiceToken {
///     type Future = Ready<Result<Principal, Error>>;
///
///     fn authenticate(&self, request: &http::request::Parts) -> Attempt<Self::Future> {
///         match self.extractor.extract(request) {
///             Err(error) => Attempt::Rejected(error),
///             Ok(None) => Attempt::NoCredential,
///             Ok(Some(token)) => {
///                 use subtle::ConstantTimeEq;
///                 if bool::from(token.value().as_bytes().ct_eq(self.expected.as_bytes())) {
///                     Attempt::Authenticated(Principal::builder("billing", CredentialKind::Custom("service")).build())
///                 } else {
///                     Attempt::Rejected(Error::new(ErrorKind::InvalidCredential).with_scheme(token.scheme()))
///                 }
///             }
///         }
///     }
///
///     fn sources(&self) -> Vec<CredentialSource> {
///         self.extractor.sources().to_vec()
///     }
/// }
/// ```
pub trait Authenticator: Send + Sync + 'static {
    /// The future of a verification that has to wait.
    type Future: Future<Output = Result<Principal, Error>> + Send + 'static;

    /// Looks at the request head and decides, or starts a verification.
    ///
    /// The head is as the client sent it: credential headers are not marked sensitive yet (the
    /// layer marks them on the requests it forwards), so never log `request.headers`.
    fn authenticate(&self, request: &Parts) -> Attempt<Self::Future>;

    /// Where this authenticator reads credentials, in the order it tries them. Called once, when
    /// the layer is built: the layer challenges with these sources' schemes, marks their headers
    /// sensitive and strips them when asked.
    fn sources(&self) -> Vec<CredentialSource>;
}

impl<A: Authenticator + ?Sized> Authenticator for Arc<A> {
    type Future = A::Future;

    fn authenticate(&self, request: &Parts) -> Attempt<Self::Future> {
        (**self).authenticate(request)
    }

    fn sources(&self) -> Vec<CredentialSource> {
        (**self).sources()
    }
}

impl<A: Authenticator + ?Sized> Authenticator for Box<A> {
    type Future = A::Future;

    fn authenticate(&self, request: &Parts) -> Attempt<Self::Future> {
        (**self).authenticate(request)
    }

    fn sources(&self) -> Vec<CredentialSource> {
        (**self).sources()
    }
}

/// Combinators for every [`Authenticator`].
pub trait AuthenticatorExt: Authenticator + Sized {
    /// Accepts whichever of `self` or `other` finds its kind of credential, trying `self` first.
    ///
    /// A recognised but bad credential stops the chain with its `401`; credentials of both kinds
    /// in one request are `400 invalid_request` ([`ErrorKind::ConflictingCredentials`]).
    ///
    /// [`ErrorKind::ConflictingCredentials`]: crate::ErrorKind::ConflictingCredentials
    fn or<B: Authenticator>(self, other: B) -> Or<Self, B> {
        Or::new(self, other)
    }

    /// Requires both `self` and `other` to succeed. The `Principal` of `self` is used; the
    /// credential of `other` is recorded in its attributes under
    /// [`ALSO_AUTHENTICATED_ATTRIBUTE`].
    fn and<B: Authenticator>(self, other: B) -> And<Self, B> {
        And::new(self, other)
    }

    /// Bounds how long a pending verification may take; past `after`, the request is refused
    /// with `503` ([`ErrorKind::StoreTimeout`]), never allowed.
    ///
    /// Needs a tokio runtime with the time driver enabled (axum, hyper and tonic servers have
    /// one).
    ///
    /// [`ErrorKind::StoreTimeout`]: crate::ErrorKind::StoreTimeout
    #[cfg(feature = "tokio")]
    fn timeout(self, after: std::time::Duration) -> Timeout<Self> {
        Timeout::new(self, after)
    }
}

impl<A: Authenticator> AuthenticatorExt for A {}
