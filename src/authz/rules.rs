//! The rule table: one layer, a requirement per (method, route pattern), deny by default.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::check::{AuthzStats, Core, DenialReason, Match, NameCheck, Names, Refusal};
use super::check::{authenticated, matched_route};
use super::future::{ResponseFuture, Waiting, conclude};
use super::policy::{
    BoxDecisionFuture, ErasedPolicy, Evaluation, Policy, PolicyExt, PolicyRequest,
};
use crate::error::ConfigError;
use crate::principal::Principal;
use crate::response::{DefaultResponder, Responder};

/// What a route requires: nothing (public), an authenticated principal, scopes, roles, a
/// [`Policy`], or several of these together ([`and`](Self::and)).
///
/// Every requirement but [`public`](Self::public) first needs an authenticated principal: an
/// anonymous or missing one gets `401`. Then scopes, roles and the policy are checked in that
/// order, and the first that fails decides (`403`; `503` for a policy that fails).
///
/// Invalid names are reported by [`AuthorizeRoutesBuilder::build`]. See the
/// [module docs](crate::authz) for an example.
#[derive(Clone)]
pub struct Requirement {
    inner: Result<Compiled, ConfigError>,
}

#[derive(Clone, Default)]
struct Compiled {
    public: bool,
    names: Vec<NameCheck>,
    policy: Option<Arc<dyn ErasedPolicy>>,
    shadow: bool,
}

impl Requirement {
    fn ok(compiled: Compiled) -> Self {
        Self {
            inner: Ok(compiled),
        }
    }

    /// No requirement: anyone may call the route, with or without credentials.
    ///
    /// Credentials that are sent are still checked by the `Authenticate` layer in front: in its
    /// [optional mode](crate::authn::AuthenticateLayer::optional) a request without one passes
    /// as anonymous, and a bad one is still `401`.
    #[must_use]
    pub fn public() -> Self {
        Self::ok(Compiled {
            public: true,
            ..Compiled::default()
        })
    }

    /// An authenticated (not anonymous) principal, whatever its scopes and roles.
    #[must_use]
    pub fn authenticated() -> Self {
        Self::ok(Compiled::default())
    }

    fn names<I>(what: Names, mode: Match, names: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self {
            inner: NameCheck::new(what, mode, names).map(|check| Compiled {
                names: vec![check],
                ..Compiled::default()
            }),
        }
    }

    /// Every one of `scopes`; a principal lacking one gets `403 insufficient_scope` with the
    /// required scopes in `scope`.
    #[must_use]
    pub fn all_scopes<I>(scopes: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::names(Names::Scopes, Match::All, scopes)
    }

    /// At least one of `scopes`.
    #[must_use]
    pub fn any_scope<I>(scopes: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::names(Names::Scopes, Match::Any, scopes)
    }

    /// Every one of `roles`; a principal lacking one gets `403` without a challenge.
    #[must_use]
    pub fn all_roles<I>(roles: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::names(Names::Roles, Match::All, roles)
    }

    /// At least one of `roles`.
    #[must_use]
    pub fn any_role<I>(roles: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Self::names(Names::Roles, Match::Any, roles)
    }

    /// `policy` must allow.
    #[must_use]
    pub fn policy<P: Policy>(policy: P) -> Self {
        Self::ok(Compiled {
            policy: Some(Arc::new(policy)),
            ..Compiled::default()
        })
    }

    /// Both requirements. [`public`](Self::public) adds nothing to another requirement;
    /// two policies are combined with [`PolicyExt::and`]. The result is in shadow mode when
    /// either part is.
    #[must_use]
    pub fn and(self, other: Requirement) -> Self {
        let (a, b) = match (self.inner, other.inner) {
            (Err(e), _) | (_, Err(e)) => return Self { inner: Err(e) },
            (Ok(a), Ok(b)) => (a, b),
        };
        let shadow = a.shadow || b.shadow;
        let combined = match (a.public, b.public) {
            (true, true) => Compiled {
                public: true,
                ..Compiled::default()
            },
            (true, false) => b,
            (false, true) => a,
            (false, false) => {
                let mut names = a.names;
                names.extend(b.names);
                let policy = match (a.policy, b.policy) {
                    (Some(pa), Some(pb)) => {
                        Some(Arc::new(Erased(pa).and(Erased(pb))) as Arc<dyn ErasedPolicy>)
                    }
                    (p, None) | (None, p) => p,
                };
                Compiled {
                    public: false,
                    names,
                    policy,
                    shadow: false,
                }
            }
        };
        Self::ok(Compiled { shadow, ..combined })
    }

    /// Shadow mode for this rule: it is evaluated and recorded (a tracing event, the layer's
    /// counters, a [`ShadowDecision`](super::ShadowDecision) in the response's extensions), but
    /// the request passes.
    ///
    /// # Security
    ///
    /// While on, the route is not protected by this rule. Use it to roll a new rule out.
    #[must_use]
    pub fn shadow(self) -> Self {
        Self {
            inner: self.inner.map(|c| Compiled { shadow: true, ..c }),
        }
    }
}

impl fmt::Debug for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Err(e) => f.debug_tuple("Requirement").field(e).finish(),
            Ok(c) => fmt::Debug::fmt(c, f),
        }
    }
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.public {
            return f.write_str("Public");
        }
        f.debug_struct("Requirement")
            .field("names", &self.names)
            .field("policy", &self.policy.is_some())
            .field("shadow", &self.shadow)
            .finish()
    }
}

/// A type-erased policy as a [`Policy`] again, so that two can be combined.
struct Erased(Arc<dyn ErasedPolicy>);

impl Policy for Erased {
    type Future = BoxDecisionFuture;

    fn evaluate(
        &self,
        principal: &Principal,
        request: &PolicyRequest<'_>,
    ) -> Evaluation<Self::Future> {
        self.0.evaluate_boxed(principal, request)
    }
}

/// Which methods a rule covers.
#[derive(Clone, Debug)]
enum Methods {
    Any,
    These(Vec<Method>),
}

#[derive(Debug)]
struct RuleSpec {
    methods: Methods,
    pattern: String,
    requirement: Requirement,
}

/// Builds an [`AuthorizeRoutesLayer`]. From [`AuthorizeRoutesLayer::builder`].
///
/// Patterns are route patterns exactly as axum reports them in `MatchedPath`
/// (`/orders/{id}`, including the prefix of a nested router), not request paths.
#[must_use]
#[derive(Debug)]
pub struct AuthorizeRoutesBuilder {
    rules: Vec<RuleSpec>,
    shadow: bool,
    allow_unlisted: bool,
}

impl AuthorizeRoutesBuilder {
    /// A rule for `methods` on `pattern`.
    ///
    /// A `GET` rule also covers `HEAD` unless a `HEAD` rule exists, as axum's `get` serves
    /// both.
    pub fn rule<I>(mut self, methods: I, pattern: &str, requirement: Requirement) -> Self
    where
        I: IntoIterator<Item = Method>,
    {
        self.rules.push(RuleSpec {
            methods: Methods::These(methods.into_iter().collect()),
            pattern: pattern.to_owned(),
            requirement,
        });
        self
    }

    /// A rule for every method on `pattern` that has no rule of its own: a method-specific
    /// rule wins.
    pub fn any_method(mut self, pattern: &str, requirement: Requirement) -> Self {
        self.rules.push(RuleSpec {
            methods: Methods::Any,
            pattern: pattern.to_owned(),
            requirement,
        });
        self
    }

    /// A `GET` (and `HEAD`) rule.
    pub fn get(self, pattern: &str, requirement: Requirement) -> Self {
        self.rule([Method::GET], pattern, requirement)
    }

    /// A `POST` rule.
    pub fn post(self, pattern: &str, requirement: Requirement) -> Self {
        self.rule([Method::POST], pattern, requirement)
    }

    /// A `PUT` rule.
    pub fn put(self, pattern: &str, requirement: Requirement) -> Self {
        self.rule([Method::PUT], pattern, requirement)
    }

    /// A `PATCH` rule.
    pub fn patch(self, pattern: &str, requirement: Requirement) -> Self {
        self.rule([Method::PATCH], pattern, requirement)
    }

    /// A `DELETE` rule.
    pub fn delete(self, pattern: &str, requirement: Requirement) -> Self {
        self.rule([Method::DELETE], pattern, requirement)
    }

    /// Shadow mode for the whole table: every decision is computed and recorded (a tracing
    /// event, the counters, a [`ShadowDecision`](super::ShadowDecision) in the response's
    /// extensions), but every request passes. Off by default.
    ///
    /// # Security
    ///
    /// While on, the table protects nothing. Use it to roll a table out on a running service:
    /// watch [`AuthorizeRoutesLayer::stats`] and the shadow records, then turn it off.
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// Lets requests to a matched route that has no rule for their method through, with no
    /// requirement at all. By default they are refused: `401` when unauthenticated, `403`
    /// otherwise.
    ///
    /// # Security
    ///
    /// A route added later without a rule is then open to everyone, anonymous callers included:
    /// the table stops failing closed. Prefer an explicit [`Requirement::public`] rule for each
    /// public route. Requests with no matched route (axum's `MatchedPath`) are refused even
    /// with this option, so that a table installed with `layer` instead of `route_layer` does
    /// not open every route.
    pub fn dangerous_allow_unlisted_routes(mut self) -> Self {
        self.allow_unlisted = true;
        self
    }

    /// Builds the table.
    ///
    /// # Errors
    ///
    /// When a pattern does not start with `/`, a rule names no method, two rules cover the same
    /// method (or both cover any method) on the same pattern, or a requirement has an invalid or
    /// empty list of scopes or roles.
    pub fn build(self) -> Result<AuthorizeRoutesLayer, ConfigError> {
        let mut routes: Routes = HashMap::default();
        let mut rules: Vec<Rule> = Vec::with_capacity(self.rules.len());
        for spec in self.rules {
            if !spec.pattern.starts_with('/') {
                return Err(ConfigError::new(format!(
                    "route pattern {:?} must start with '/'",
                    spec.pattern
                )));
            }
            let compiled = spec.requirement.inner.map_err(|e| {
                ConfigError::new(format!("rule for {:?}: {}", spec.pattern, e.message()))
            })?;
            let index =
                u32::try_from(rules.len()).map_err(|_| ConfigError::new("too many rules"))?;
            let slots = match routes.entry(spec.pattern.as_str().into()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(Slots::default()),
            };
            let duplicate = |what: &str| {
                ConfigError::new(format!(
                    "two rules for {what} {:?}: remove one (exact duplicates are refused so that \
                     the effective rule is never a matter of order)",
                    spec.pattern
                ))
            };
            let label = match &spec.methods {
                Methods::Any => {
                    if slots.any.replace(index).is_some() {
                        return Err(duplicate("any method on"));
                    }
                    format!("* {}", spec.pattern)
                }
                Methods::These(methods) => {
                    if methods.is_empty() {
                        return Err(ConfigError::new(format!(
                            "the rule for {:?} names no method; use `any_method` for every \
                             method",
                            spec.pattern
                        )));
                    }
                    for method in methods {
                        let slot = slots.slot_mut(method);
                        if slot.replace(index).is_some() {
                            return Err(duplicate(&format!("{method}")));
                        }
                    }
                    let names: Vec<&str> = methods.iter().map(Method::as_str).collect();
                    format!("{} {}", names.join(","), spec.pattern)
                }
            };
            rules.push(Rule {
                label: label.into(),
                pattern: spec.pattern.into_boxed_str(),
                shadow: compiled.shadow,
                requirement: compiled,
            });
        }
        let table = Table {
            routes,
            rules: rules.into_boxed_slice(),
        };
        Ok(AuthorizeRoutesLayer {
            shared: Arc::new(RoutesShared {
                table: Arc::new(table),
                allow_unlisted: self.allow_unlisted,
                warned_no_route: Arc::new(AtomicBool::new(false)),
                core: Core::new(DefaultResponder).with_shadow(self.shadow),
            }),
        })
    }
}

/// The nine methods of RFC 9110 and PATCH get a fixed slot each; others go in a short list.
const STANDARD: usize = 9;
const GET: usize = 0;
const HEAD: usize = 1;

fn standard_slot(method: &Method) -> Option<usize> {
    Some(match method.as_str() {
        "GET" => GET,
        "HEAD" => HEAD,
        "POST" => 2,
        "PUT" => 3,
        "DELETE" => 4,
        "PATCH" => 5,
        "OPTIONS" => 6,
        "CONNECT" => 7,
        "TRACE" => 8,
        _ => return None,
    })
}

/// The rules of one route pattern, by method.
#[derive(Debug, Default)]
struct Slots {
    standard: [Option<u32>; STANDARD],
    extension: Vec<(Method, Option<u32>)>,
    any: Option<u32>,
}

impl Slots {
    fn slot_mut(&mut self, method: &Method) -> &mut Option<u32> {
        if let Some(i) = standard_slot(method) {
            return &mut self.standard[i];
        }
        let pos = match self.extension.iter().position(|(m, _)| m == method) {
            Some(pos) => pos,
            None => {
                self.extension.push((method.clone(), None));
                self.extension.len() - 1
            }
        };
        &mut self.extension[pos].1
    }

    #[inline]
    fn find(&self, method: &Method) -> Option<u32> {
        let specific = match standard_slot(method) {
            Some(HEAD) => self.standard[HEAD].or(self.standard[GET]),
            Some(i) => self.standard[i],
            None => self
                .extension
                .iter()
                .find(|(m, _)| m == method)
                .and_then(|(_, i)| *i),
        };
        specific.or(self.any)
    }
}

struct Rule {
    label: Arc<str>,
    pattern: Box<str>,
    shadow: bool,
    requirement: Compiled,
}

/// A fast, not DoS-resistant hash (the multiply-rotate of rustc's `FxHasher`).
///
/// Safe here: the keys are the table's own patterns, and a lookup key is axum's `MatchedPath`,
/// which is always one of the router's registered patterns, never text a client chose.
#[derive(Default, Clone, Copy)]
struct PatternHasher(u64);

impl PatternHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for PatternHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type Routes = HashMap<Box<str>, Slots, BuildHasherDefault<PatternHasher>>;

struct Table {
    routes: Routes,
    rules: Box<[Rule]>,
}

enum Found<'t> {
    Rule(&'t Rule),
    Unlisted,
    NoRoute,
}

impl Table {
    #[inline]
    fn lookup(&self, method: &Method, route: Option<&str>) -> Found<'_> {
        let Some(route) = route else {
            return Found::NoRoute;
        };
        match self
            .routes
            .get(route)
            .and_then(|slots| slots.find(method))
            .and_then(|i| self.rules.get(i as usize))
        {
            Some(rule) => Found::Rule(rule),
            None => Found::Unlisted,
        }
    }
}

pub(crate) struct RoutesShared<R> {
    table: Arc<Table>,
    allow_unlisted: bool,
    warned_no_route: Arc<AtomicBool>,
    core: Core<R>,
}

/// Applies [`AuthorizeRoutes`]: one table of rules for every route of a router, keyed on the
/// method and the matched route pattern.
///
/// Apply it with axum's `Router::route_layer`, after the routes: then unknown paths stay `404`
/// (they never reach it) and every matched route is checked against the table. A route without
/// a rule for the request's method is refused (`401` when unauthenticated, `403` otherwise)
/// unless [`dangerous_allow_unlisted_routes`](AuthorizeRoutesBuilder::dangerous_allow_unlisted_routes)
/// is set; so is a method the route does not serve, since axum's `405` answer sits behind the
/// same layer. Applied with `Router::layer`, it also sees requests that matched no route, and
/// refuses them instead of letting them reach the `404`.
///
/// Looking a rule up is one hash lookup on the route pattern and an array index on the method.
/// See the [module docs](crate::authz) for an example.
#[must_use]
pub struct AuthorizeRoutesLayer<R = DefaultResponder> {
    shared: Arc<RoutesShared<R>>,
}

impl AuthorizeRoutesLayer {
    /// Starts an empty table: deny by default, enforcing.
    pub fn builder() -> AuthorizeRoutesBuilder {
        AuthorizeRoutesBuilder {
            rules: Vec::new(),
            shadow: false,
            allow_unlisted: false,
        }
    }
}

impl<R> AuthorizeRoutesLayer<R> {
    /// Replaces the responder, for example with [`ProblemJson`](crate::response::ProblemJson).
    pub fn responder<R2>(self, responder: R2) -> AuthorizeRoutesLayer<R2> {
        let s = &*self.shared;
        AuthorizeRoutesLayer {
            shared: Arc::new(RoutesShared {
                table: Arc::clone(&s.table),
                allow_unlisted: s.allow_unlisted,
                warned_no_route: Arc::clone(&s.warned_no_route),
                core: s.core.with_responder(responder),
            }),
        }
    }

    /// The rules, as labels (`"GET /orders/{id}"`, `"* /health"`), in the order given.
    pub fn rules(&self) -> impl Iterator<Item = &str> {
        self.shared.table.rules.iter().map(|r| &*r.label)
    }

    /// A snapshot of the counters, shared by every service this layer built.
    #[must_use]
    pub fn stats(&self) -> AuthzStats {
        self.shared.core.stats()
    }
}

impl<R> Clone for AuthorizeRoutesLayer<R> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

fn debug_shared<R>(name: &str, s: &RoutesShared<R>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.debug_struct(name)
        .field(
            "rules",
            &s.table
                .rules
                .iter()
                .map(|r| (&*r.label, &r.requirement))
                .collect::<Vec<_>>(),
        )
        .field("allow_unlisted", &s.allow_unlisted)
        .field("shadow", &s.core.shadow)
        .finish_non_exhaustive()
}

impl<R> fmt::Debug for AuthorizeRoutesLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_shared("AuthorizeRoutesLayer", &self.shared, f)
    }
}

impl<S, R> Layer<S> for AuthorizeRoutesLayer<R> {
    type Service = AuthorizeRoutes<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthorizeRoutes {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Checks every request against a table of rules. Built by [`AuthorizeRoutesLayer`].
///
/// See the [module docs](crate::authz) for an example.
pub struct AuthorizeRoutes<S, R = DefaultResponder> {
    inner: S,
    shared: Arc<RoutesShared<R>>,
}

impl<S, R> AuthorizeRoutes<S, R> {
    crate::macros::define_inner_service_accessors!();

    /// A snapshot of the counters, shared with the layer that built this service.
    #[must_use]
    pub fn stats(&self) -> AuthzStats {
        self.shared.core.stats()
    }
}

impl<S: Clone, R> Clone for AuthorizeRoutes<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, R> fmt::Debug for AuthorizeRoutes<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_shared("AuthorizeRoutes", &self.shared, f)
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for AuthorizeRoutes<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    R: Responder<ResBody>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, BoxDecisionFuture, R, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        let core = &shared.core;
        let rule = match shared
            .table
            .lookup(req.method(), matched_route(req.extensions()))
        {
            Found::Rule(rule) => rule,
            Found::Unlisted if shared.allow_unlisted => {
                return conclude(core, &mut self.inner, req, None, false, None);
            }
            Found::Unlisted => {
                let refusal = Some(Refusal::new(DenialReason::UnlistedRoute));
                return conclude(core, &mut self.inner, req, refusal, core.shadow, None);
            }
            Found::NoRoute => {
                if !shared.warned_no_route.swap(true, Relaxed) {
                    tracing::warn!(
                        target: "credentialflow::authz",
                        "AuthorizeRoutes saw a request without axum's MatchedPath and refused it; \
                         apply the table with `Router::route_layer` (after the routes), and \
                         enable the `axum` feature"
                    );
                }
                let refusal = Some(Refusal::new(DenialReason::NoMatchedRoute));
                return conclude(core, &mut self.inner, req, refusal, core.shadow, None);
            }
        };
        let shadow = core.shadow || rule.shadow;
        let label = Some(&rule.label);
        let requirement = &rule.requirement;
        if requirement.public {
            return conclude(core, &mut self.inner, req, None, shadow, label);
        }
        let Some(principal) = authenticated(req.extensions()) else {
            let refusal = Some(Refusal::unauthenticated());
            return conclude(core, &mut self.inner, req, refusal, shadow, label);
        };
        if let Some(failed) = requirement.names.iter().find(|c| !c.passes(principal)) {
            let refusal = Some(failed.refusal(principal));
            return conclude(core, &mut self.inner, req, refusal, shadow, label);
        }
        let Some(policy) = &requirement.policy else {
            return conclude(core, &mut self.inner, req, None, shadow, label);
        };
        // A reference count: the policy view below borrows the request mutably.
        let principal = principal.clone();
        let (mut parts, body) = req.into_parts();
        let evaluation = {
            let request = PolicyRequest::new(&mut parts);
            // The rule's pattern is the matched route: no need to read it again.
            policy.evaluate_boxed(&principal, &request.with_route(&rule.pattern))
        };
        drop(principal);
        let req = Request::from_parts(parts, body);
        match evaluation {
            Evaluation::Ready(result) => conclude(
                core,
                &mut self.inner,
                req,
                Refusal::policy(result),
                shadow,
                label,
            ),
            Evaluation::Pending(fut) => {
                let fresh = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, fresh);
                ResponseFuture::evaluating(
                    fut,
                    Waiting {
                        req,
                        inner: ready,
                        core: core.clone(),
                        shadow,
                        rule: Some(Arc::clone(&rule.label)),
                    },
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(b: AuthorizeRoutesBuilder) -> Result<AuthorizeRoutesLayer, ConfigError> {
        b.build()
    }

    fn rule_of<'t>(
        layer: &'t AuthorizeRoutesLayer,
        method: Method,
        route: &str,
    ) -> Option<&'t str> {
        match layer.shared.table.lookup(&method, Some(route)) {
            Found::Rule(r) => Some(&r.label),
            Found::Unlisted | Found::NoRoute => None,
        }
    }

    #[test]
    fn method_specific_rule_beats_any_method_rule() {
        let layer = build(
            AuthorizeRoutesLayer::builder()
                .any_method("/orders", Requirement::authenticated())
                .post("/orders", Requirement::all_scopes(["orders:write"])),
        )
        .unwrap();
        assert_eq!(
            rule_of(&layer, Method::POST, "/orders"),
            Some("POST /orders")
        );
        assert_eq!(rule_of(&layer, Method::GET, "/orders"), Some("* /orders"));
        assert_eq!(
            rule_of(&layer, Method::DELETE, "/orders"),
            Some("* /orders")
        );
        // Order of declaration does not matter.
        let layer = build(
            AuthorizeRoutesLayer::builder()
                .post("/orders", Requirement::all_scopes(["orders:write"]))
                .any_method("/orders", Requirement::authenticated()),
        )
        .unwrap();
        assert_eq!(
            rule_of(&layer, Method::POST, "/orders"),
            Some("POST /orders")
        );
    }

    #[test]
    fn head_falls_back_to_get_but_not_the_other_way() {
        let layer = build(
            AuthorizeRoutesLayer::builder()
                .get("/a", Requirement::public())
                .rule([Method::HEAD], "/b", Requirement::public()),
        )
        .unwrap();
        assert_eq!(rule_of(&layer, Method::HEAD, "/a"), Some("GET /a"));
        assert_eq!(rule_of(&layer, Method::GET, "/b"), None);
    }

    #[test]
    fn extension_methods_have_slots() {
        let purge = Method::from_bytes(b"PURGE").unwrap();
        let layer = build(AuthorizeRoutesLayer::builder().rule(
            [purge.clone()],
            "/cache",
            Requirement::public(),
        ))
        .unwrap();
        assert_eq!(rule_of(&layer, purge, "/cache"), Some("PURGE /cache"));
        assert_eq!(rule_of(&layer, Method::GET, "/cache"), None);
    }

    #[test]
    fn unknown_pattern_and_unlisted_method_find_nothing() {
        let layer =
            build(AuthorizeRoutesLayer::builder().get("/a", Requirement::public())).unwrap();
        assert_eq!(rule_of(&layer, Method::GET, "/b"), None);
        assert_eq!(rule_of(&layer, Method::POST, "/a"), None);
        assert!(matches!(
            layer.shared.table.lookup(&Method::GET, None),
            Found::NoRoute
        ));
    }

    #[test]
    fn exact_duplicates_are_config_errors() {
        let dup = AuthorizeRoutesLayer::builder()
            .get("/a", Requirement::public())
            .rule(
                [Method::POST, Method::GET],
                "/a",
                Requirement::authenticated(),
            )
            .build();
        assert!(dup.unwrap_err().message().contains("two rules for GET"));

        let dup_any = AuthorizeRoutesLayer::builder()
            .any_method("/a", Requirement::public())
            .any_method("/a", Requirement::public())
            .build();
        assert!(dup_any.unwrap_err().message().contains("any method"));

        let dup_in_one = AuthorizeRoutesLayer::builder()
            .rule([Method::GET, Method::GET], "/a", Requirement::public())
            .build();
        assert!(dup_in_one.is_err());

        // Same method, different patterns: fine.
        assert!(
            AuthorizeRoutesLayer::builder()
                .get("/a", Requirement::public())
                .get("/a/{id}", Requirement::public())
                .build()
                .is_ok()
        );
    }

    #[test]
    fn a_rule_without_methods_is_a_config_error() {
        let err = AuthorizeRoutesLayer::builder()
            .rule(Vec::<Method>::new(), "/a", Requirement::public())
            .build()
            .unwrap_err();
        assert!(err.message().contains("names no method"), "{err}");
    }

    #[test]
    fn bad_patterns_and_names_are_config_errors() {
        assert!(
            AuthorizeRoutesLayer::builder()
                .get("orders", Requirement::public())
                .build()
                .is_err()
        );
        for bad in [
            Requirement::all_scopes(Vec::<&str>::new()),
            Requirement::all_scopes(["orders write"]),
            Requirement::any_scope(["caf\u{e9}"]),
            Requirement::any_scope(["a\"b"]),
            Requirement::all_roles([""]),
            Requirement::authenticated().and(Requirement::any_role(["a b"])),
        ] {
            let err = AuthorizeRoutesLayer::builder()
                .get("/a", bad)
                .build()
                .unwrap_err();
            assert!(err.message().starts_with("rule for \"/a\""), "{err}");
        }
    }

    #[test]
    fn and_merges_checks_and_shadow() {
        let r = Requirement::all_scopes(["a"])
            .and(Requirement::any_role(["r"]))
            .and(Requirement::policy(
                |_: &Principal, _: &PolicyRequest<'_>| true,
            ))
            .and(Requirement::policy(|_: &Principal, _: &PolicyRequest<'_>| true).shadow());
        let c = r.inner.unwrap();
        assert_eq!(c.names.len(), 2);
        assert!(c.policy.is_some());
        assert!(c.shadow);
        assert!(!c.public);

        let p = Requirement::public()
            .and(Requirement::public())
            .inner
            .unwrap();
        assert!(p.public);
        let a = Requirement::public()
            .and(Requirement::all_scopes(["x"]))
            .inner
            .unwrap();
        assert!(!a.public);
        assert_eq!(a.names.len(), 1);
    }

    #[test]
    fn labels_name_methods_and_pattern() {
        let layer = AuthorizeRoutesLayer::builder()
            .rule([Method::GET, Method::POST], "/x", Requirement::public())
            .any_method("/y", Requirement::public())
            .build()
            .unwrap();
        assert_eq!(layer.rules().collect::<Vec<_>>(), ["GET,POST /x", "* /y"]);
        let dbg = format!("{layer:?}");
        assert!(dbg.contains("GET,POST /x"), "{dbg}");
    }
}
