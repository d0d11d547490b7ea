//! Ready-made policies: tenant isolation, attribute equality, resource ownership.

use std::fmt;

use serde_json::Value;

use super::policy::{Evaluation, Policy, PolicyRequest, ReadyDecision};
use crate::principal::Principal;

fn param<'r>(request: &'r PolicyRequest<'_>, name: &str, policy: &str) -> Option<&'r str> {
    let value = request.path_param(name);
    if value.is_none() {
        tracing::debug!(
            target: "credentialflow::authz",
            policy,
            param = name,
            route = request.route(),
            "the route has no such path parameter; denied"
        );
    }
    value
}

/// The principal's tenant must equal a path parameter: `/tenants/{tenant}/…` is open only to
/// principals of that tenant (OWASP API1, broken object-level authorization).
///
/// Denies a principal without a tenant, and a route without the parameter (a configuration
/// mistake, logged at debug level). Comparison is exact and case-sensitive, on the
/// percent-decoded parameter.
///
/// ```
/// use credentialflow::authz::{AuthorizeLayer, TenantFromPath};
///
/// let layer = AuthorizeLayer::new(TenantFromPath::new("tenant"));
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct TenantFromPath {
    param: Box<str>,
}

impl TenantFromPath {
    /// Compares the principal's tenant with the path parameter `param`.
    pub fn new(param: impl Into<String>) -> Self {
        Self {
            param: param.into().into_boxed_str(),
        }
    }
}

impl fmt::Debug for TenantFromPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantFromPath")
            .field("param", &self.param)
            .finish()
    }
}

impl Policy for TenantFromPath {
    type Future = ReadyDecision;

    fn evaluate(
        &self,
        principal: &Principal,
        request: &PolicyRequest<'_>,
    ) -> Evaluation<Self::Future> {
        let Some(tenant) = principal.tenant() else {
            return Evaluation::deny();
        };
        Evaluation::from(param(request, &self.param, "tenant_from_path") == Some(tenant))
    }
}

/// One of the principal's attributes must equal a JSON value (attribute-based access control).
///
/// ```
/// use credentialflow::authz::{AuthorizeLayer, AttributeEquals};
/// use serde_json::json;
///
/// let sales_only = AuthorizeLayer::new(AttributeEquals::new("department", json!("sales")));
/// # let _ = sales_only;
/// ```
#[derive(Clone)]
pub struct AttributeEquals {
    name: Box<str>,
    value: Value,
}

impl AttributeEquals {
    /// Requires the attribute `name` to equal `value` (JSON equality: `"1"` is not `1`).
    pub fn new(name: impl Into<String>, value: impl Into<Value>) -> Self {
        Self {
            name: name.into().into_boxed_str(),
            value: value.into(),
        }
    }
}

impl fmt::Debug for AttributeEquals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The expected value is configuration, not a secret; the principal's is never shown.
        f.debug_struct("AttributeEquals")
            .field("name", &self.name)
            .field("value", &self.value)
            .finish()
    }
}

impl Policy for AttributeEquals {
    type Future = ReadyDecision;

    fn evaluate(
        &self,
        principal: &Principal,
        _request: &PolicyRequest<'_>,
    ) -> Evaluation<Self::Future> {
        Evaluation::from(principal.attribute(&self.name) == Some(&self.value))
    }
}

#[derive(Clone, Debug)]
enum Owner {
    Subject,
    Attribute(Box<str>),
}

/// The principal must own the resource a path parameter names: `/users/{user}/…` only for
/// that user.
///
/// [`new`](Self::new) compares the parameter with the principal's subject;
/// [`with_attribute`](Self::with_attribute) with an attribute, which may be a string, a
/// number, or an array of those (the principal owns each listed resource).
///
/// ```
/// use credentialflow::authz::{AuthorizeLayer, OwnerFromPath};
///
/// let own_profile = AuthorizeLayer::new(OwnerFromPath::new("user"));
/// let own_projects = AuthorizeLayer::new(OwnerFromPath::with_attribute("project", "projects"));
/// # let _ = (own_profile, own_projects);
/// ```
#[derive(Clone, Debug)]
pub struct OwnerFromPath {
    param: Box<str>,
    owner: Owner,
}

impl OwnerFromPath {
    /// The path parameter `param` must equal the principal's subject.
    pub fn new(param: impl Into<String>) -> Self {
        Self {
            param: param.into().into_boxed_str(),
            owner: Owner::Subject,
        }
    }

    /// The path parameter `param` must equal the principal's attribute `attribute` (a string
    /// or number), or be one of its elements (an array).
    pub fn with_attribute(param: impl Into<String>, attribute: impl Into<String>) -> Self {
        Self {
            param: param.into().into_boxed_str(),
            owner: Owner::Attribute(attribute.into().into_boxed_str()),
        }
    }
}

fn names_resource(value: &Value, id: &str) -> bool {
    match value {
        Value::String(s) => s == id,
        Value::Number(n) => {
            // Compare numerically-equal text without allocating for the common cases.
            if let Some(i) = n.as_i64() {
                id.parse::<i64>().is_ok_and(|p| p == i)
            } else if let Some(u) = n.as_u64() {
                id.parse::<u64>().is_ok_and(|p| p == u)
            } else {
                false
            }
        }
        Value::Array(items) => items.iter().any(|v| !v.is_array() && names_resource(v, id)),
        _ => false,
    }
}

impl Policy for OwnerFromPath {
    type Future = ReadyDecision;

    fn evaluate(
        &self,
        principal: &Principal,
        request: &PolicyRequest<'_>,
    ) -> Evaluation<Self::Future> {
        let Some(id) = param(request, &self.param, "owner_from_path") else {
            return Evaluation::deny();
        };
        let owns = match &self.owner {
            Owner::Subject => principal.subject() == id,
            Owner::Attribute(name) => principal
                .attribute(name)
                .is_some_and(|v| names_resource(v, id)),
        };
        Evaluation::from(owns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CredentialKind;
    use crate::authz::Decision;
    use serde_json::json;

    fn decide<P: Policy>(policy: &P, principal: &Principal, params: &[(&str, &str)]) -> bool {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        let request = PolicyRequest::new(&mut parts).with_path_params(params);
        match policy.evaluate(principal, &request) {
            Evaluation::Ready(Ok(d)) => d == Decision::Allow,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn who() -> Principal {
        Principal::builder("u-1", CredentialKind::ApiKey)
            .tenant("acme")
            .attribute("projects", json!(["p1", 7]))
            .attribute("account", json!(42))
            .attribute("department", "sales")
            .build()
    }

    #[test]
    fn tenant_from_path() {
        let p = TenantFromPath::new("tenant");
        assert!(decide(&p, &who(), &[("tenant", "acme")]));
        assert!(!decide(&p, &who(), &[("tenant", "globex")]));
        assert!(!decide(&p, &who(), &[("tenant", "ACME")]));
        assert!(!decide(&p, &who(), &[]));
        let tenantless = Principal::builder("x", CredentialKind::ApiKey).build();
        assert!(!decide(&p, &tenantless, &[("tenant", "")]));
    }

    #[test]
    fn attribute_equals() {
        assert!(decide(
            &AttributeEquals::new("department", "sales"),
            &who(),
            &[]
        ));
        assert!(!decide(
            &AttributeEquals::new("department", "it"),
            &who(),
            &[]
        ));
        assert!(!decide(&AttributeEquals::new("account", "42"), &who(), &[]));
        assert!(decide(&AttributeEquals::new("account", 42), &who(), &[]));
        assert!(!decide(
            &AttributeEquals::new("missing", Value::Null),
            &who(),
            &[]
        ));
    }

    #[test]
    fn owner_from_path() {
        assert!(decide(
            &OwnerFromPath::new("user"),
            &who(),
            &[("user", "u-1")]
        ));
        assert!(!decide(
            &OwnerFromPath::new("user"),
            &who(),
            &[("user", "u-2")]
        ));
        assert!(!decide(&OwnerFromPath::new("user"), &who(), &[]));
        let projects = OwnerFromPath::with_attribute("project", "projects");
        assert!(decide(&projects, &who(), &[("project", "p1")]));
        assert!(decide(&projects, &who(), &[("project", "7")]));
        assert!(!decide(&projects, &who(), &[("project", "p2")]));
        let account = OwnerFromPath::with_attribute("account", "account");
        assert!(decide(&account, &who(), &[("account", "42")]));
        assert!(!decide(&account, &who(), &[("account", "042x")]));
    }
}
