//! The claims of a token, read lazily and strictly from the verified payload.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Where a claim lives: a list of object member names from the top of the payload.
///
/// Segments are taken as they are, so names containing dots or whole URLs work:
///
/// ```
/// use credentialflow::jwt::ClaimPath;
///
/// let keycloak = ClaimPath::new(["realm_access", "roles"]);
/// let auth0 = ClaimPath::single("https://example.com/roles");
/// assert_eq!(keycloak.segments().len(), 2);
/// assert_eq!(&*auth0.segments()[0], "https://example.com/roles");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClaimPath {
    segments: Arc<[Box<str>]>,
}

impl ClaimPath {
    /// A path through nested objects, outermost member first. An empty path names nothing.
    pub fn new<I, S>(segments: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Box<str>>,
    {
        Self {
            segments: segments.into_iter().map(Into::into).collect(),
        }
    }

    /// A top-level claim, whatever characters its name holds.
    pub fn single(name: impl Into<Box<str>>) -> Self {
        Self::new([name])
    }

    /// The member names, outermost first.
    #[must_use]
    pub fn segments(&self) -> &[Box<str>] {
        &self.segments
    }
}

impl fmt::Debug for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.segments.iter()).finish()
    }
}

/// A JSON object's members, borrowed from the decoded text, values left unparsed.
pub(crate) struct RawObject<'a> {
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

#[derive(Deserialize)]
struct Name<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for RawObject<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for ObjectVisitor<'a> {
            type Value = RawObject<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut members: Vec<(Cow<'a, str>, &'a RawValue)> =
                    Vec::with_capacity(map.size_hint().unwrap_or(12).min(32));
                while let Some(Name(name)) = map.next_key::<Name<'a>>()? {
                    let value: &'a RawValue = map.next_value()?;
                    // RFC 7519 §4: duplicate member names are refused, not "last one wins".
                    if members.iter().any(|(n, _)| *n == name) {
                        return Err(serde::de::Error::custom("duplicate member name"));
                    }
                    members.push((name, value));
                }
                Ok(RawObject { members })
            }
        }
        deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

impl<'a> RawObject<'a> {
    pub(crate) fn parse(json: &'a [u8]) -> Option<Self> {
        serde_json::from_slice(json).ok()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.members
            .iter()
            .find(|(n, _)| n.as_ref() == name)
            .map(|(_, v)| *v)
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.members.iter().map(|(n, _)| n.as_ref())
    }
}

/// A JSON string, borrowed when it has no escapes.
#[derive(Deserialize)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

/// The value of a raw JSON member as a string; `Err` when it is another JSON type.
pub(crate) fn as_str(raw: &RawValue) -> Result<Cow<'_, str>, ()> {
    serde_json::from_str::<Str<'_>>(raw.get())
        .map(|s| s.0)
        .map_err(|_| ())
}

/// A NumericDate (RFC 7519 §2): a JSON number, never a string (CVE-2026-25537 class).
pub(crate) fn as_numeric_date(raw: &RawValue) -> Result<f64, ()> {
    let text = raw.get();
    if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Err(());
    }
    let n: serde_json::Number = serde_json::from_str(text).map_err(|_| ())?;
    n.as_f64().filter(|f| f.is_finite()).ok_or(())
}

/// A JSON array of strings, or one string when `allow_single`.
pub(crate) fn as_strings(raw: &RawValue, allow_single: bool) -> Result<Vec<Cow<'_, str>>, ()> {
    let text = raw.get();
    if text.starts_with('"') {
        return if allow_single {
            as_str(raw).map(|s| vec![s])
        } else {
            Err(())
        };
    }
    serde_json::from_str::<Vec<Str<'_>>>(text)
        .map(|v| v.into_iter().map(|s| s.0).collect())
        .map_err(|_| ())
}

/// Follows `path` from the top-level object. `Ok(None)` when a member is absent; `Err` when
/// an intermediate value is not an object.
pub(crate) fn lookup<'a>(
    top: &RawObject<'a>,
    path: &ClaimPath,
) -> Result<Option<&'a RawValue>, ()> {
    let mut segments = path.segments().iter();
    let Some(first) = segments.next() else {
        return Ok(None);
    };
    let Some(mut current) = top.get(first) else {
        return Ok(None);
    };
    for segment in segments {
        let object: RawObject<'a> = serde_json::from_str(current.get()).map_err(|_| ())?;
        match object.get(segment) {
            Some(next) => current = next,
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

/// The verified claims of a token, for your own mapping and checks.
///
/// Values are parsed on demand from the payload, which was decoded once. Only handed out after
/// the signature and the standard claims were verified.
pub struct Claims<'a> {
    pub(crate) object: &'a RawObject<'a>,
    pub(crate) subject: &'a str,
    pub(crate) issuer: &'a str,
}

impl<'a> Claims<'a> {
    /// The subject (`sub`).
    #[must_use]
    pub fn subject(&self) -> &str {
        self.subject
    }

    /// The issuer (`iss`), equal to the configured issuer that verified the token.
    #[must_use]
    pub fn issuer(&self) -> &str {
        self.issuer
    }

    /// The raw JSON text of the claim at `path`, if present.
    #[must_use]
    pub fn raw(&self, path: &ClaimPath) -> Option<&'a str> {
        lookup(self.object, path).ok().flatten().map(RawValue::get)
    }

    /// The claim at `path` if it is a JSON string; `None` if absent or of another type.
    #[must_use]
    pub fn string(&self, path: &ClaimPath) -> Option<Cow<'a, str>> {
        lookup(self.object, path)
            .ok()
            .flatten()
            .and_then(|raw| as_str(raw).ok())
    }

    /// The claim at `path` parsed into `T`; `None` if absent, `Some(Err)` if it does not
    /// parse.
    pub fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &ClaimPath,
    ) -> Option<Result<T, serde_json::Error>> {
        let raw = lookup(self.object, path).ok().flatten()?;
        Some(serde_json::from_str(raw.get()))
    }

    /// The top-level claim names, in token order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.object.names()
    }
}

impl fmt::Debug for Claims<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Claim values may be personal data: names only.
        f.debug_struct("Claims")
            .field("names", &self.object.names().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_members_are_refused() {
        assert!(RawObject::parse(br#"{"a":1,"a":2}"#).is_none());
        assert!(RawObject::parse(br#"{"a":1,"b":2}"#).is_some());
        assert!(RawObject::parse(br#"[1]"#).is_none());
    }

    #[test]
    fn numeric_dates_must_be_numbers() {
        let obj =
            RawObject::parse(br#"{"n":1700000000,"f":1.5,"s":"1700000000","b":true}"#).unwrap();
        assert_eq!(as_numeric_date(obj.get("n").unwrap()), Ok(1_700_000_000.0));
        assert_eq!(as_numeric_date(obj.get("f").unwrap()), Ok(1.5));
        assert!(as_numeric_date(obj.get("s").unwrap()).is_err());
        assert!(as_numeric_date(obj.get("b").unwrap()).is_err());
    }

    #[test]
    fn paths_follow_nested_objects_and_odd_names() {
        let obj = RawObject::parse(
            br#"{"realm_access":{"roles":["a","b"]},"https://x.example/roles":["c"],"a.b":"d"}"#,
        )
        .unwrap();
        let roles = lookup(&obj, &ClaimPath::new(["realm_access", "roles"]))
            .unwrap()
            .unwrap();
        assert_eq!(as_strings(roles, false).unwrap(), ["a", "b"]);
        let url = lookup(&obj, &ClaimPath::single("https://x.example/roles"))
            .unwrap()
            .unwrap();
        assert_eq!(as_strings(url, false).unwrap(), ["c"]);
        let dotted = lookup(&obj, &ClaimPath::single("a.b")).unwrap().unwrap();
        assert_eq!(as_str(dotted).unwrap(), "d");
        assert!(lookup(&obj, &ClaimPath::new(["a.b", "x"])).is_err());
        assert!(matches!(
            lookup(&obj, &ClaimPath::new(["missing", "x"])),
            Ok(None)
        ));
    }
}
