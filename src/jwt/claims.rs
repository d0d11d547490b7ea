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
    registered: Registered<'a>,
}

/// The registered claims the authenticator reads on every token, found while the object is
/// parsed, so that none needs a search by name afterwards.
#[derive(Clone, Copy, Default)]
pub(crate) struct Registered<'a> {
    pub(crate) iss: Option<&'a RawValue>,
    pub(crate) sub: Option<&'a RawValue>,
    pub(crate) aud: Option<&'a RawValue>,
    pub(crate) exp: Option<&'a RawValue>,
    pub(crate) nbf: Option<&'a RawValue>,
    pub(crate) iat: Option<&'a RawValue>,
    pub(crate) jti: Option<&'a RawValue>,
    pub(crate) scope: Option<&'a RawValue>,
    pub(crate) scp: Option<&'a RawValue>,
    pub(crate) cnf: Option<&'a RawValue>,
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
                let mut registered = Registered::default();
                while let Some(Name(name)) = map.next_key::<Name<'a>>()? {
                    let value: &'a RawValue = map.next_value()?;
                    // RFC 7519 §4: duplicate member names are refused, not "last one wins".
                    // A registered name is a duplicate when its slot is taken; any other is
                    // compared with the names before it.
                    let reg = &mut registered;
                    let slot = match &*name {
                        "iss" => Some(&mut reg.iss),
                        "sub" => Some(&mut reg.sub),
                        "aud" => Some(&mut reg.aud),
                        "exp" => Some(&mut reg.exp),
                        "nbf" => Some(&mut reg.nbf),
                        "iat" => Some(&mut reg.iat),
                        "jti" => Some(&mut reg.jti),
                        "scope" => Some(&mut reg.scope),
                        "scp" => Some(&mut reg.scp),
                        "cnf" => Some(&mut reg.cnf),
                        _ => None,
                    };
                    let duplicate = match slot {
                        Some(slot) => slot.replace(value).is_some(),
                        None => members.iter().any(|(n, _)| *n == name),
                    };
                    if duplicate {
                        return Err(serde::de::Error::custom("duplicate member name"));
                    }
                    members.push((name, value));
                }
                Ok(RawObject {
                    members,
                    registered,
                })
            }
        }
        deserializer.deserialize_map(ObjectVisitor(std::marker::PhantomData))
    }
}

impl<'a> RawObject<'a> {
    /// Parses a JSON object from text already known to be UTF-8 (no second validation of
    /// every member, as parsing from bytes would do).
    pub(crate) fn parse(json: &'a str) -> Option<Self> {
        serde_json::from_str(json).ok()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.members
            .iter()
            .find(|(n, _)| n.as_ref() == name)
            .map(|(_, v)| *v)
    }

    pub(crate) fn registered(&self) -> &Registered<'a> {
        &self.registered
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.members.iter().map(|(n, _)| n.as_ref())
    }
}

/// A JSON string, borrowed when it has no escapes.
#[derive(Deserialize)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

/// The contents of a JSON string without escapes, read straight from its validated text.
fn plain_string(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    // Valid JSON (a `RawValue` is): without a backslash, the next `"` ends the string, so
    // `inner` holds no quote and is the value exactly.
    (!inner.contains('\\')).then_some(inner)
}

/// The value of a raw JSON member as a string; `Err` when it is another JSON type.
pub(crate) fn as_str(raw: &RawValue) -> Result<Cow<'_, str>, ()> {
    let text = raw.get();
    if let Some(plain) = plain_string(text) {
        return Ok(Cow::Borrowed(plain));
    }
    serde_json::from_str::<Str<'_>>(text)
        .map(|s| s.0)
        .map_err(|_| ())
}

/// A NumericDate (RFC 7519 §2): a JSON number, never a string (CVE-2026-25537 class).
pub(crate) fn as_numeric_date(raw: &RawValue) -> Result<f64, ()> {
    let text = raw.get();
    // The common case, a non-negative integer of at most 15 digits (exact in an f64): no
    // float parsing.
    if (1..=15).contains(&text.len()) {
        let digits = text.bytes().try_fold(0u64, |n, b| {
            b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
        });
        if let Some(n) = digits {
            #[allow(clippy::cast_precision_loss)]
            return Ok(n as f64);
        }
    }
    if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Err(());
    }
    let n: serde_json::Number = serde_json::from_str(text).map_err(|_| ())?;
    n.as_f64().filter(|f| f.is_finite()).ok_or(())
}

/// The strings of a JSON array of strings (or of one string), without allocating when none
/// has escapes. Built by [`as_strings`], which checked every element is a string.
pub(crate) enum Strings<'a> {
    /// One JSON string.
    One(Option<Cow<'a, str>>),
    /// The inside of an array of escape-free strings (between `[` and `]`).
    Plain(&'a str),
    /// Anything else, parsed by serde_json.
    Parsed(std::vec::IntoIter<Cow<'a, str>>),
}

/// The next element of the inside of a valid JSON array: `Some(Ok)` a string without escapes,
/// `Some(Err)` another value (or a string with escapes), `None` at the end.
fn next_plain<'a>(rest: &mut &'a str) -> Option<Result<&'a str, ()>> {
    // Byte loops, not `find`: elements are a few bytes long, shorter than a memchr call.
    let text: &'a str = rest;
    let bytes = text.as_bytes();
    let mut i = 0;
    while bytes
        .get(i)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b','))
    {
        i += 1;
    }
    match bytes.get(i) {
        None => {
            *rest = "";
            return None;
        }
        Some(b'"') => {}
        Some(_) => return Some(Err(())),
    }
    let start = i + 1;
    let mut end = start;
    while bytes.get(end).is_some_and(|b| *b != b'"') {
        end += 1;
    }
    // Both ends are at ASCII bytes, so char boundaries.
    let item = text.get(start..end)?;
    *rest = text.get(end + 1..)?;
    Some(Ok(item))
}

impl<'a> Iterator for Strings<'a> {
    type Item = Cow<'a, str>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::One(one) => one.take(),
            Self::Plain(rest) => next_plain(rest).and_then(Result::ok).map(Cow::Borrowed),
            Self::Parsed(iter) => iter.next(),
        }
    }
}

/// A JSON array of strings, or one string when `allow_single`.
pub(crate) fn as_strings(raw: &RawValue, allow_single: bool) -> Result<Strings<'_>, ()> {
    let text = raw.get();
    if text.starts_with('"') {
        return if allow_single {
            as_str(raw).map(|s| Strings::One(Some(s)))
        } else {
            Err(())
        };
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']'))
        && !inner.contains('\\')
    {
        let mut rest = inner;
        while let Some(item) = next_plain(&mut rest) {
            item?;
        }
        return Ok(Strings::Plain(inner));
    }
    serde_json::from_str::<Vec<Str<'_>>>(text)
        .map(|v| Strings::Parsed(v.into_iter().map(|s| s.0).collect::<Vec<_>>().into_iter()))
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
        assert!(RawObject::parse(r#"{"a":1,"a":2}"#).is_none());
        assert!(RawObject::parse(r#"{"a":1,"b":2}"#).is_some());
        assert!(RawObject::parse(r#"[1]"#).is_none());
    }

    #[test]
    fn numeric_dates_must_be_numbers() {
        let obj =
            RawObject::parse(r#"{"n":1700000000,"f":1.5,"s":"1700000000","b":true}"#).unwrap();
        assert_eq!(as_numeric_date(obj.get("n").unwrap()), Ok(1_700_000_000.0));
        assert_eq!(as_numeric_date(obj.get("f").unwrap()), Ok(1.5));
        assert!(as_numeric_date(obj.get("s").unwrap()).is_err());
        assert!(as_numeric_date(obj.get("b").unwrap()).is_err());
    }

    #[test]
    fn paths_follow_nested_objects_and_odd_names() {
        let obj = RawObject::parse(
            r#"{"realm_access":{"roles":["a","b"]},"https://x.example/roles":["c"],"a.b":"d"}"#,
        )
        .unwrap();
        let roles = lookup(&obj, &ClaimPath::new(["realm_access", "roles"]))
            .unwrap()
            .unwrap();
        assert_eq!(
            as_strings(roles, false).unwrap().collect::<Vec<_>>(),
            ["a", "b"]
        );
        let url = lookup(&obj, &ClaimPath::single("https://x.example/roles"))
            .unwrap()
            .unwrap();
        assert_eq!(as_strings(url, false).unwrap().collect::<Vec<_>>(), ["c"]);
        let dotted = lookup(&obj, &ClaimPath::single("a.b")).unwrap().unwrap();
        assert_eq!(as_str(dotted).unwrap(), "d");
        assert!(lookup(&obj, &ClaimPath::new(["a.b", "x"])).is_err());
        assert!(matches!(
            lookup(&obj, &ClaimPath::new(["missing", "x"])),
            Ok(None)
        ));
    }

    fn strings(json: &str) -> Result<Vec<String>, ()> {
        let raw: &RawValue = serde_json::from_str(json).unwrap();
        as_strings(raw, true).map(|s| s.map(Cow::into_owned).collect())
    }

    #[test]
    fn fast_and_slow_string_paths_agree_with_serde() {
        for json in [
            r#""plain""#,
            r#""with \"escape\"""#,
            r#""\u0041b""#,
            r#""""#,
            r#""a,b]\"""#,
        ] {
            let raw: &RawValue = serde_json::from_str(json).unwrap();
            let expected: String = serde_json::from_str(json).unwrap();
            assert_eq!(as_str(raw).unwrap(), expected, "{json}");
        }
        for json in ["1", "true", "null", "[]", "{}"] {
            let raw: &RawValue = serde_json::from_str(json).unwrap();
            assert!(as_str(raw).is_err(), "{json}");
        }
    }

    #[test]
    fn fast_and_slow_array_paths_agree_with_serde() {
        for json in [
            r#"["a","b"]"#,
            r#"[ "a" , "b,c" ,"]" ]"#,
            r#"["a\"b", "c"]"#,
            r#"["\u00e9t\u00e9"]"#,
            "[]",
            "[ ]",
            r#""one""#,
        ] {
            let expected: Vec<String> = match serde_json::from_str::<serde_json::Value>(json) {
                Ok(serde_json::Value::String(s)) => vec![s],
                Ok(v) => serde_json::from_value(v).unwrap(),
                Err(e) => panic!("{e}"),
            };
            assert_eq!(strings(json).unwrap(), expected, "{json}");
        }
        for json in [
            r#"["a",1]"#,
            r#"[["a"]]"#,
            r#"["a",null]"#,
            "1",
            "{}",
            r#"[{"a":"b"}]"#,
        ] {
            assert!(strings(json).is_err(), "{json}");
        }
    }

    #[test]
    fn numeric_dates_fast_and_slow() {
        for (json, expected) in [
            ("0", 0.0),
            ("1700000000", 1_700_000_000.0),
            ("999999999999999", 999_999_999_999_999.0),
            ("12345678901234567890", 12_345_678_901_234_567_890.0),
            ("-5", -5.0),
            ("1e3", 1000.0),
            ("1.5", 1.5),
        ] {
            let raw: &RawValue = serde_json::from_str(json).unwrap();
            assert_eq!(as_numeric_date(raw), Ok(expected), "{json}");
        }
        for json in [r#""1""#, "true", "null", "[1]"] {
            let raw: &RawValue = serde_json::from_str(json).unwrap();
            assert!(as_numeric_date(raw).is_err(), "{json}");
        }
    }
}
