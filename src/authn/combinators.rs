//! `Or`, `And` and `Timeout`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::request::Parts;
use pin_project_lite::pin_project;
use serde_json::{Value, json};

use super::{Attempt, Authenticator};
use crate::error::{Error, ErrorKind};
use crate::extract::CredentialSource;
use crate::principal::Principal;

/// The attribute under which [`And`] records the credentials that were verified besides the
/// primary one: an array of `{"kind", "subject", "credential_id"}` objects.
pub const ALSO_AUTHENTICATED_ATTRIBUTE: &str = "credentialflow.also_authenticated";

/// First-match over two authenticators. See [`AuthenticatorExt::or`](super::AuthenticatorExt::or).
#[derive(Clone)]
pub struct Or<A, B> {
    first: A,
    second: B,
}

impl<A, B> Or<A, B> {
    pub(crate) fn new(first: A, second: B) -> Self {
        Self { first, second }
    }
}

impl<A, B> fmt::Debug for Or<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Or").finish_non_exhaustive()
    }
}

pin_project! {
    /// The future of [`Or`].
    pub struct OrFuture<FA, FB> {
        #[pin]
        state: Either<FA, FB>,
    }
}

pin_project! {
    #[project = EitherProj]
    enum Either<FA, FB> {
        First { #[pin] fut: FA },
        Second { #[pin] fut: FB },
    }
}

impl<FA, FB> fmt::Debug for OrFuture<FA, FB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrFuture").finish_non_exhaustive()
    }
}

impl<FA, FB> Future for OrFuture<FA, FB>
where
    FA: Future<Output = Result<Principal, Error>>,
    FB: Future<Output = Result<Principal, Error>>,
{
    type Output = Result<Principal, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            EitherProj::First { fut } => fut.poll(cx),
            EitherProj::Second { fut } => fut.poll(cx),
        }
    }
}

fn present<F>(attempt: &Attempt<F>) -> bool {
    !matches!(attempt, Attempt::NoCredential)
}

fn is_bad_request(error: &Error) -> bool {
    error.kind().status() == http::StatusCode::BAD_REQUEST
}

impl<A: Authenticator, B: Authenticator> Authenticator for Or<A, B> {
    type Future = OrFuture<A::Future, B::Future>;

    fn authenticate(&self, request: &Parts) -> Attempt<Self::Future> {
        // Both are asked even when the first refuses: whether a request used two methods must
        // not depend on whether its first credential is valid, or checked synchronously.
        let first = self.first.authenticate(request);
        let second = self.second.authenticate(request);
        match (first, second) {
            // A malformed request is refused as such, whatever else it carries.
            (Attempt::Rejected(e), _) | (_, Attempt::Rejected(e)) if is_bad_request(&e) => {
                Attempt::Rejected(e)
            }
            // RFC 6750 §2: one method per request.
            (first, second) if present(&first) && present(&second) => {
                Attempt::Rejected(Error::new(ErrorKind::ConflictingCredentials))
            }
            (Attempt::Rejected(e), _) | (_, Attempt::Rejected(e)) => Attempt::Rejected(e),
            (Attempt::Authenticated(p), _) | (_, Attempt::Authenticated(p)) => {
                Attempt::Authenticated(p)
            }
            (Attempt::Pending(fut), _) => Attempt::Pending(OrFuture {
                state: Either::First { fut },
            }),
            (_, Attempt::Pending(fut)) => Attempt::Pending(OrFuture {
                state: Either::Second { fut },
            }),
            _ => Attempt::NoCredential,
        }
    }

    fn sources(&self) -> Vec<CredentialSource> {
        let mut sources = self.first.sources();
        sources.extend(self.second.sources());
        sources
    }
}

/// All-of over two authenticators. See [`AuthenticatorExt::and`](super::AuthenticatorExt::and).
#[derive(Clone)]
pub struct And<A, B> {
    first: A,
    second: B,
}

impl<A, B> And<A, B> {
    pub(crate) fn new(first: A, second: B) -> Self {
        Self { first, second }
    }
}

impl<A, B> fmt::Debug for And<A, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("And").finish_non_exhaustive()
    }
}

pin_project! {
    /// The future of [`And`]: waits for both verifications.
    pub struct AndFuture<FA, FB> {
        #[pin]
        first: Step<FA>,
        #[pin]
        second: Step<FB>,
    }
}

pin_project! {
    #[project = StepProj]
    enum Step<F> {
        Waiting { #[pin] fut: F },
        Done { result: Option<Result<Principal, Error>> },
    }
}

impl<F> Step<F> {
    fn from_attempt(attempt: Attempt<F>) -> Self {
        match attempt {
            Attempt::Pending(fut) => Step::Waiting { fut },
            Attempt::Authenticated(p) => Step::Done {
                result: Some(Ok(p)),
            },
            Attempt::Rejected(e) => Step::Done {
                result: Some(Err(e)),
            },
            // Filtered out before an AndFuture is built.
            Attempt::NoCredential => Step::Done {
                result: Some(Err(Error::new(ErrorKind::MissingCredential))),
            },
        }
    }
}

impl<F: Future<Output = Result<Principal, Error>>> Step<F> {
    fn poll_step(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let StepProj::Waiting { fut } = self.as_mut().project() {
            let result = ready!(fut.poll(cx));
            self.set(Step::Done {
                result: Some(result),
            });
        }
        Poll::Ready(())
    }

    fn take(self: Pin<&mut Self>) -> Option<Result<Principal, Error>> {
        match self.project() {
            StepProj::Done { result } => result.take(),
            StepProj::Waiting { .. } => None,
        }
    }
}

impl<FA, FB> fmt::Debug for AndFuture<FA, FB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AndFuture").finish_non_exhaustive()
    }
}

impl<FA, FB> Future for AndFuture<FA, FB>
where
    FA: Future<Output = Result<Principal, Error>>,
    FB: Future<Output = Result<Principal, Error>>,
{
    type Output = Result<Principal, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let a = this.first.as_mut().poll_step(cx);
        let b = this.second.as_mut().poll_step(cx);
        if a.is_pending() || b.is_pending() {
            return Poll::Pending;
        }
        let (Some(a), Some(b)) = (this.first.take(), this.second.take()) else {
            return Poll::Ready(Err(Error::new(ErrorKind::InvalidCredential)));
        };
        Poll::Ready(combine_all(a, b))
    }
}

/// Both must succeed; a definite refusal (401) outranks an unavailable backend (503), since
/// a new credential is what the client needs then.
fn combine_all(
    a: Result<Principal, Error>,
    b: Result<Principal, Error>,
) -> Result<Principal, Error> {
    match (a, b) {
        (Ok(primary), Ok(other)) => Ok(record_also(primary, &other)),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
        (Err(ea), Err(eb)) => {
            if ea.kind().is_unavailable() && !eb.kind().is_unavailable() {
                Err(eb)
            } else {
                Err(ea)
            }
        }
    }
}

fn record_also(primary: Principal, other: &Principal) -> Principal {
    let entry = json!({
        "kind": other.kind().as_str(),
        "subject": other.subject(),
        "credential_id": other.credential_id(),
    });
    let mut list = match primary.attribute(ALSO_AUTHENTICATED_ATTRIBUTE) {
        Some(Value::Array(existing)) => existing.clone(),
        _ => Vec::new(),
    };
    list.push(entry);
    primary
        .into_builder()
        .attribute(ALSO_AUTHENTICATED_ATTRIBUTE, Value::Array(list))
        .build()
}

impl<A: Authenticator, B: Authenticator> Authenticator for And<A, B> {
    type Future = AndFuture<A::Future, B::Future>;

    fn authenticate(&self, request: &Parts) -> Attempt<Self::Future> {
        let first = self.first.authenticate(request);
        if let Attempt::Rejected(e) = first {
            return Attempt::Rejected(e);
        }
        let second = self.second.authenticate(request);
        if let Attempt::Rejected(e) = second {
            return Attempt::Rejected(e);
        }
        match (first, second) {
            (Attempt::NoCredential, Attempt::NoCredential) => Attempt::NoCredential,
            // One credential of two: a request that tried to authenticate and fell short.
            (Attempt::NoCredential, _) | (_, Attempt::NoCredential) => {
                Attempt::Rejected(Error::new(ErrorKind::MissingCredential))
            }
            (Attempt::Authenticated(a), Attempt::Authenticated(b)) => {
                Attempt::Authenticated(record_also(a, &b))
            }
            (first, second) => Attempt::Pending(AndFuture {
                first: Step::from_attempt(first),
                second: Step::from_attempt(second),
            }),
        }
    }

    fn sources(&self) -> Vec<CredentialSource> {
        let mut sources = self.first.sources();
        sources.extend(self.second.sources());
        sources
    }
}

#[cfg(feature = "tokio")]
pub use self::timeout::{DEFAULT_TIMEOUT, Timeout, TimeoutFuture};

#[cfg(feature = "tokio")]
mod timeout {
    use std::time::Duration;

    use super::*;

    /// The timeout stores and key sources use unless configured otherwise: 2 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

    /// Bounds pending verifications. See
    /// [`AuthenticatorExt::timeout`](crate::authn::AuthenticatorExt::timeout).
    #[derive(Clone, Debug)]
    pub struct Timeout<A> {
        inner: A,
        after: Duration,
    }

    impl<A> Timeout<A> {
        pub(crate) fn new(inner: A, after: Duration) -> Self {
            Self { inner, after }
        }
    }

    pin_project! {
        /// A pending verification or decision bounded by a timeout: when it runs out, the
        /// answer is [`Error::timeout`] (`503` with `Retry-After`). The future of [`Timeout`]
        /// here and of [`authz::Timeout`](crate::authz::Timeout).
        pub struct TimeoutFuture<F> {
            #[pin]
            inner: tokio::time::Timeout<F>,
            after: Duration,
        }
    }

    impl<F> fmt::Debug for TimeoutFuture<F> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("TimeoutFuture")
                .field("after", &self.after)
                .finish_non_exhaustive()
        }
    }

    impl<F: Future> TimeoutFuture<F> {
        pub(crate) fn new(inner: F, after: Duration) -> Self {
            Self {
                inner: tokio::time::timeout(after, inner),
                after,
            }
        }
    }

    impl<F: Future<Output = Result<T, Error>>, T> Future for TimeoutFuture<F> {
        type Output = Result<T, Error>;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let this = self.project();
            match ready!(this.inner.poll(cx)) {
                Ok(result) => Poll::Ready(result),
                Err(_elapsed) => Poll::Ready(Err(Error::timeout(*this.after))),
            }
        }
    }

    impl<A: Authenticator> Authenticator for Timeout<A> {
        type Future = TimeoutFuture<A::Future>;

        fn authenticate(&self, request: &Parts) -> Attempt<Self::Future> {
            match self.inner.authenticate(request) {
                Attempt::Pending(fut) => Attempt::Pending(TimeoutFuture::new(fut, self.after)),
                Attempt::NoCredential => Attempt::NoCredential,
                Attempt::Authenticated(p) => Attempt::Authenticated(p),
                Attempt::Rejected(e) => Attempt::Rejected(e),
            }
        }

        fn sources(&self) -> Vec<CredentialSource> {
            self.inner.sources()
        }
    }
}
