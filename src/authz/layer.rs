//! The single-route layers: `RequireScopesLayer`, `RequireRolesLayer`, `AuthorizeLayer`.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::check::{AuthzStats, Core, Match, NameCheck, Names};
use super::policy::Policy;
use super::service::{Authorize, RequireRoles, RequireScopes};
use crate::error::ConfigError;
use crate::response::DefaultResponder;

/// The configuration a `RequireScopes` or `RequireRoles` service shares, built once.
pub(crate) struct NameShared<R> {
    pub(crate) check: NameCheck,
    pub(crate) core: Core<R>,
}

impl<R> Clone for NameShared<R> {
    fn clone(&self) -> Self {
        Self {
            check: self.check.clone(),
            core: self.core.clone(),
        }
    }
}

impl<R> NameShared<R> {
    fn new(check: NameCheck, responder: R) -> Self {
        Self {
            check,
            core: Core::new(responder),
        }
    }

    fn debug(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("mode", &self.check.mode)
            .field("names", &self.check.names().collect::<Vec<_>>())
            .field("shadow", &self.core.shadow)
            .finish_non_exhaustive()
    }
}

/// Applies [`RequireScopes`] to a route: the principal needs all (or any) of the given scopes.
///
/// Unauthenticated requests get `401` with the route's challenges; a principal without the
/// scopes gets `403` with `WWW-Authenticate: Bearer realm="…", error="insufficient_scope",
/// scope="…"` (the required scopes). See the [module docs](crate::authz) for an example.
#[must_use]
pub struct RequireScopesLayer<R = DefaultResponder> {
    shared: Arc<NameShared<R>>,
}

/// Applies [`RequireRoles`] to a route: the principal needs all (or any) of the given roles.
///
/// Unauthenticated requests get `401` with the route's challenges; a principal without the
/// roles gets `403` without a challenge. See the [module docs](crate::authz) for an example.
#[must_use]
pub struct RequireRolesLayer<R = DefaultResponder> {
    shared: Arc<NameShared<R>>,
}

macro_rules! name_layer {
    ($layer:ident, $service:ident, $names:expr, $what:literal, $item:literal) => {
        impl $layer {
            #[doc = concat!("Requires every one of `", $what, "`.")]
            ///
            /// # Errors
            ///
            #[doc = concat!("When no ", $item, " is given, or one is empty or holds a character")]
            /// that cannot be sent (a space; for scopes also `"`, `\`, non-ASCII or control
            /// characters, which RFC 6750 §3 forbids in `scope`).
            pub fn all<I>(names: I) -> Result<Self, ConfigError>
            where
                I: IntoIterator,
                I::Item: AsRef<str>,
            {
                Self::with_mode(Match::All, names)
            }

            #[doc = concat!("Requires at least one of `", $what, "`.")]
            ///
            /// # Errors
            ///
            /// As for [`all`](Self::all).
            pub fn any<I>(names: I) -> Result<Self, ConfigError>
            where
                I: IntoIterator,
                I::Item: AsRef<str>,
            {
                Self::with_mode(Match::Any, names)
            }

            /// Requires all or any of `names`, as `mode` says.
            ///
            /// # Errors
            ///
            /// As for [`all`](Self::all).
            pub fn with_mode<I>(mode: Match, names: I) -> Result<Self, ConfigError>
            where
                I: IntoIterator,
                I::Item: AsRef<str>,
            {
                let check = NameCheck::new($names, mode, names)?;
                Ok(Self {
                    shared: Arc::new(NameShared::new(check, DefaultResponder)),
                })
            }
        }

        impl<R> $layer<R> {
            fn map_core(self, f: impl FnOnce(&Core<R>) -> Core<R>) -> Self {
                let shared = &*self.shared;
                Self {
                    shared: Arc::new(NameShared {
                        check: shared.check.clone(),
                        core: f(&shared.core),
                    }),
                }
            }

            /// Shadow mode: the check runs and is recorded (a tracing event, the
            /// [`stats`](Self::stats) counters, a [`ShadowDecision`](super::ShadowDecision) in
            /// the response's extensions), but every request passes. Off by default.
            ///
            /// # Security
            ///
            /// While on, the route is not protected by this layer. Use it to roll a new
            /// requirement out: watch the would-be rejections, then turn it off.
            pub fn shadow(self, shadow: bool) -> Self {
                self.map_core(|core| core.with_shadow(shadow))
            }

            /// Replaces the responder, for example with
            /// [`ProblemJson`](crate::response::ProblemJson).
            pub fn responder<R2>(self, responder: R2) -> $layer<R2> {
                let shared = &*self.shared;
                $layer {
                    shared: Arc::new(NameShared {
                        check: shared.check.clone(),
                        core: shared.core.with_responder(responder),
                    }),
                }
            }

            /// All or any.
            #[must_use]
            pub fn mode(&self) -> Match {
                self.shared.check.mode
            }

            #[doc = concat!("The required ", $item, "s, in the order given, duplicates dropped.")]
            pub fn names(&self) -> impl Iterator<Item = &str> {
                self.shared.check.names()
            }

            /// A snapshot of the counters, shared by every service this layer built.
            #[must_use]
            pub fn stats(&self) -> AuthzStats {
                self.shared.core.stats()
            }
        }

        impl<R> Clone for $layer<R> {
            fn clone(&self) -> Self {
                Self {
                    shared: Arc::clone(&self.shared),
                }
            }
        }

        impl<R> fmt::Debug for $layer<R> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.shared.debug(stringify!($layer), f)
            }
        }

        impl<S, R> Layer<S> for $layer<R> {
            type Service = $service<S, R>;

            fn layer(&self, inner: S) -> Self::Service {
                $service::from_shared(inner, Arc::clone(&self.shared))
            }
        }
    };
}

name_layer!(
    RequireScopesLayer,
    RequireScopes,
    Names::Scopes,
    "scopes",
    "scope"
);
name_layer!(
    RequireRolesLayer,
    RequireRoles,
    Names::Roles,
    "roles",
    "role"
);

/// The configuration an `Authorize` service shares, built once.
pub(crate) struct PolicyShared<P, R> {
    pub(crate) policy: Arc<P>,
    pub(crate) core: Core<R>,
}

/// Applies [`Authorize`] to a route: a [`Policy`] decides.
///
/// Unauthenticated requests get `401` with the route's challenges before the policy runs; a
/// denial is `403` without a challenge; a policy that fails or times out is `503` with
/// `Retry-After`. See the [module docs](crate::authz) for an example.
#[must_use]
pub struct AuthorizeLayer<P, R = DefaultResponder> {
    shared: Arc<PolicyShared<P, R>>,
}

impl<P: Policy> AuthorizeLayer<P> {
    /// A layer that asks `policy`.
    pub fn new(policy: P) -> Self {
        Self {
            shared: Arc::new(PolicyShared {
                policy: Arc::new(policy),
                core: Core::new(DefaultResponder),
            }),
        }
    }
}

impl<P, R> AuthorizeLayer<P, R> {
    /// Shadow mode: the policy runs and its decision is recorded (a tracing event, the
    /// [`stats`](Self::stats) counters, a [`ShadowDecision`](super::ShadowDecision) in the
    /// response's extensions), but every request passes, even when the policy fails. Off by
    /// default.
    ///
    /// # Security
    ///
    /// While on, the route is not protected by this layer. Use it to roll a new policy out:
    /// watch the would-be rejections, then turn it off.
    pub fn shadow(self, shadow: bool) -> Self {
        Self {
            shared: Arc::new(PolicyShared {
                policy: Arc::clone(&self.shared.policy),
                core: self.shared.core.with_shadow(shadow),
            }),
        }
    }

    /// Replaces the responder, for example with [`ProblemJson`](crate::response::ProblemJson).
    pub fn responder<R2>(self, responder: R2) -> AuthorizeLayer<P, R2> {
        AuthorizeLayer {
            shared: Arc::new(PolicyShared {
                policy: Arc::clone(&self.shared.policy),
                core: self.shared.core.with_responder(responder),
            }),
        }
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> &P {
        &self.shared.policy
    }

    /// A snapshot of the counters, shared by every service this layer built.
    #[must_use]
    pub fn stats(&self) -> AuthzStats {
        self.shared.core.stats()
    }
}

impl<P, R> Clone for AuthorizeLayer<P, R> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<P, R> fmt::Debug for AuthorizeLayer<P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeLayer")
            .field("policy", &format_args!("{}", std::any::type_name::<P>()))
            .field("shadow", &self.shared.core.shadow)
            .finish_non_exhaustive()
    }
}

impl<S, P, R> Layer<S> for AuthorizeLayer<P, R> {
    type Service = Authorize<S, P, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize::from_shared(inner, Arc::clone(&self.shared))
    }
}
