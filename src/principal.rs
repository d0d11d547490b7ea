//! [`Principal`]: who made the request, as authentication established it.
//!
//! Authentication turns a credential into a `Principal` and puts it into the request's
//! extensions. Everything downstream (authorization, rate limiting, audit, your handlers) reads
//! only the `Principal`, never the raw credential.
//!
//! ```
//! use credentialflow::{CredentialKind, Principal};
//!
//! let principal = Principal::builder("user-42", CredentialKind::ApiKey)
//!     .credential_id("key_8f2a")
//!     .tenant("acme")
//!     .scopes(["orders:read", "orders:write"])
//!     .roles(["admin"])
//!     .attribute("department", "sales")
//!     .plan("gold")
//!     .build();
//!
//! assert!(principal.scopes().contains("orders:write"));
//! assert!(principal.roles().contains("admin"));
//! assert_eq!(principal.tenant(), Some("acme"));
//! // Cloning shares the data: a reference count, not a copy.
//! let copy = principal.clone();
//! assert_eq!(copy.subject(), "user-42");
//! ```
//!
//! In handlers, take it with the axum extractor (feature `axum`) or read it from
//! `request.extensions().get::<Principal>()` in tonic and hyper.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, LazyLock};

use serde_json::{Map, Value};

use crate::bytes_eq::same_bytes;

/// What kind of credential established a [`Principal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialKind {
    /// An API key.
    ApiKey,
    /// A JSON Web Token.
    Jwt,
    /// No credential: the route allowed an anonymous caller.
    Anonymous,
    /// A credential of a kind defined by your own [`Authenticator`](crate::authn::Authenticator).
    Custom(&'static str),
}

impl CredentialKind {
    /// A short lower-case name for logs (`"api_key"`, `"jwt"`, `"anonymous"`, or the custom name).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::Jwt => "jwt",
            Self::Anonymous => "anonymous",
            Self::Custom(name) => name,
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authenticated identity of a request. Cheap to clone (shared inner data), `Send + Sync`.
///
/// Its `Debug` output never contains a secret: it shows the subject, tenant, credential id
/// (which key or token, never the key or token itself), kind, scopes, roles and plan, and only the
/// *names* of attributes, since attribute values are free-form.
///
/// See the [module docs](crate::principal) for an example.
#[derive(Clone)]
pub struct Principal {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    subject: Box<str>,
    kind: CredentialKind,
    tenant: Option<Box<str>>,
    credential_id: Option<Box<str>>,
    scopes: NameSet,
    roles: NameSet,
    attributes: Map<String, Value>,
    expires_at: Option<u64>,
    plan: Option<Box<str>>,
}

static ANONYMOUS: LazyLock<Principal> =
    LazyLock::new(|| Principal::builder("anonymous", CredentialKind::Anonymous).build());

impl Principal {
    /// Starts building a principal for `subject`, authenticated by a credential of `kind`.
    pub fn builder(subject: impl Into<String>, kind: CredentialKind) -> PrincipalBuilder {
        PrincipalBuilder {
            inner: Inner {
                subject: subject.into().into_boxed_str(),
                kind,
                tenant: None,
                credential_id: None,
                scopes: NameSet::default(),
                roles: NameSet::default(),
                attributes: Map::new(),
                expires_at: None,
                plan: None,
            },
        }
    }

    /// The anonymous principal (subject `"anonymous"`, kind [`CredentialKind::Anonymous`], no
    /// scopes or roles), inserted by the `Authenticate` layer's optional mode.
    ///
    /// Returns a clone of one shared instance: no allocation.
    #[must_use]
    pub fn anonymous() -> Self {
        ANONYMOUS.clone()
    }

    /// Turns this principal back into a builder, to derive a changed copy.
    ///
    /// Copies the data only if other clones still share it.
    pub fn into_builder(self) -> PrincipalBuilder {
        PrincipalBuilder {
            inner: Arc::unwrap_or_clone(self.inner),
        }
    }

    /// Who: the subject (user id, service account, key owner).
    #[must_use]
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// The kind of credential that established this principal.
    #[must_use]
    pub fn kind(&self) -> CredentialKind {
        self.inner.kind
    }

    /// `true` for the anonymous principal of the optional mode.
    #[must_use]
    pub fn is_anonymous(&self) -> bool {
        self.inner.kind == CredentialKind::Anonymous
    }

    /// The tenant the principal belongs to, if any.
    #[must_use]
    pub fn tenant(&self) -> Option<&str> {
        self.inner.tenant.as_deref()
    }

    /// Which credential: the API key's public id, the JWT's `jti` or a digest of it. Never the
    /// secret itself.
    #[must_use]
    pub fn credential_id(&self) -> Option<&str> {
        self.inner.credential_id.as_deref()
    }

    /// The scopes granted. See [`NameSet`] for what a lookup costs.
    #[must_use]
    pub fn scopes(&self) -> &NameSet {
        &self.inner.scopes
    }

    /// The roles held. See [`NameSet`] for what a lookup costs.
    #[must_use]
    pub fn roles(&self) -> &NameSet {
        &self.inner.roles
    }

    /// One free-form attribute, for attribute-based policies.
    #[must_use]
    pub fn attribute(&self, name: &str) -> Option<&Value> {
        self.inner.attributes.get(name)
    }

    /// All free-form attributes.
    #[must_use]
    pub fn attributes(&self) -> &Map<String, Value> {
        &self.inner.attributes
    }

    /// When the credential expires, in seconds since the Unix epoch.
    #[must_use]
    pub fn expires_at(&self) -> Option<u64> {
        self.inner.expires_at
    }

    /// The rate-limit plan of this principal, if it has one.
    #[must_use]
    pub fn plan(&self) -> Option<&str> {
        self.inner.plan.as_deref()
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Principal")
            .field("subject", &i.subject)
            .field("kind", &i.kind)
            .field("tenant", &i.tenant)
            .field("credential_id", &i.credential_id)
            .field("scopes", &i.scopes)
            .field("roles", &i.roles)
            .field("attributes", &AttributeNames(&i.attributes))
            .field("expires_at", &i.expires_at)
            .field("plan", &i.plan)
            .finish()
    }
}

struct AttributeNames<'a>(&'a Map<String, Value>);

impl fmt::Debug for AttributeNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, format_args!("[redacted]"))))
            .finish()
    }
}

/// Builds a [`Principal`]. See the [module docs](crate::principal) for an example.
#[must_use]
pub struct PrincipalBuilder {
    inner: Inner,
}

impl PrincipalBuilder {
    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.inner.tenant = Some(tenant.into().into_boxed_str());
        self
    }

    /// Sets the credential id: which key or token, never the secret.
    pub fn credential_id(mut self, id: impl Into<String>) -> Self {
        self.inner.credential_id = Some(id.into().into_boxed_str());
        self
    }

    /// Sets the scopes, replacing any set before.
    pub fn scopes<I>(mut self, scopes: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.inner.scopes = scopes.into_iter().collect();
        self
    }

    /// Sets the scopes from an already-built set.
    pub fn scope_set(mut self, scopes: NameSet) -> Self {
        self.inner.scopes = scopes;
        self
    }

    /// Sets the roles, replacing any set before.
    pub fn roles<I>(mut self, roles: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.inner.roles = roles.into_iter().collect();
        self
    }

    /// Sets the roles from an already-built set.
    pub fn role_set(mut self, roles: NameSet) -> Self {
        self.inner.roles = roles;
        self
    }

    /// Adds (or replaces) one free-form attribute.
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.inner.attributes.insert(name.into(), value.into());
        self
    }

    /// Replaces all attributes.
    pub fn attributes(mut self, attributes: Map<String, Value>) -> Self {
        self.inner.attributes = attributes;
        self
    }

    /// Sets the credential's expiry, in seconds since the Unix epoch.
    pub fn expires_at(mut self, unix_seconds: u64) -> Self {
        self.inner.expires_at = Some(unix_seconds);
        self
    }

    /// Sets the rate-limit plan.
    pub fn plan(mut self, plan: impl Into<String>) -> Self {
        self.inner.plan = Some(plan.into().into_boxed_str());
        self
    }

    /// Finishes the principal.
    pub fn build(self) -> Principal {
        Principal {
            inner: Arc::new(self.inner),
        }
    }
}

impl fmt::Debug for PrincipalBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrincipalBuilder")
            .field("subject", &self.inner.subject)
            .finish_non_exhaustive()
    }
}

/// An immutable set of names (scopes or roles): one string buffer and the names' spans in it,
/// in the order they were given.
///
/// Up to 16 names (a typical token; repeats count) in up to 65,535 bytes live inline: building
/// costs one allocation (the buffer) and one pass over it. Each name also gets a one-byte tag of its length and last
/// byte, so a check picks the names worth comparing among all 16 in two word operations and
/// compares bytes only for those. Larger sets also get an index by a 64-bit hash of each name,
/// so a check is a binary search over the hashes and one byte comparison to confirm: no check
/// grows with the number of names beyond `log n`. Duplicates and empty names are dropped
/// (the first occurrence stays). Names are case-sensitive (RFC 6749 §3.3). Two sets are equal
/// when they hold the same names, in any order.
///
/// ```
/// use credentialflow::principal::NameSet;
///
/// let scopes = NameSet::from_space_delimited("orders:write  orders:read orders:write");
/// assert_eq!(scopes.len(), 2);
/// assert!(scopes.contains("orders:read"));
/// assert!(scopes.contains_all(["orders:read", "orders:write"]));
/// assert!(!scopes.contains_any(["admin"]));
/// assert_eq!(scopes.to_string(), "orders:write orders:read");
/// assert_eq!(scopes, NameSet::from_space_delimited("orders:read orders:write"));
/// ```
#[derive(Clone, Default)]
pub struct NameSet {
    buf: Box<str>,
    index: Index,
}

/// Sets of up to this many names are scanned rather than hashed.
const SMALL: usize = 16;

/// The longest buffer a small set's 16-bit spans can address.
const SMALL_BUF: usize = u16::MAX as usize;

#[derive(Clone)]
enum Index {
    /// Inline: a buffer of at most [`SMALL_BUF`] bytes, at most [`SMALL`] names.
    Small(SmallSpans),
    Large {
        /// `(start, end)` of each name in `buf`, in the order given.
        spans: Box<[(u32, u32)]>,
        /// `(name_hash, index into spans)`, ascending.
        by_hash: Box<[(u64, u32)]>,
    },
}

impl Default for Index {
    fn default() -> Self {
        Index::Small(SmallSpans::new())
    }
}

/// A small set's names: at most [`SMALL`], as 16-bit spans into a buffer of at most
/// [`SMALL_BUF`] bytes, in the order given, with a one-byte tag of each name's length and last
/// byte, so that a lookup finds the few names worth comparing among all sixteen at once.
///
/// Duplicates may be among the names: dropping them costs a comparison per pair of
/// look-alikes, which a lookup does not need, so the readers that count or list names skip
/// them instead ([`NameSet::len`], [`NameSet::iter`]).
#[derive(Clone)]
struct SmallSpans {
    len: u8,
    /// The [`tag`] of each name (below 0x80); [`NO_NAME`] in unused slots, which no tag
    /// matches.
    tags: [u8; SMALL],
    spans: [(u16, u16); SMALL],
}

const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGH: u64 = 0x8080_8080_8080_8080;
const ONES: u64 = 0x0101_0101_0101_0101;

/// The high bit of each byte of `x` that is zero, and no other bit: the exact SWAR zero-byte
/// test (no false positives, unlike the `(x - ONES) & !x` shortcut).
#[inline]
fn zero_bytes(x: u64) -> u64 {
    !(((x & LOW7) + LOW7) | x) & HIGH
}

/// A name's tag: its length and last byte folded into seven bits. Names of one length that end
/// in different ASCII characters get different tags, and so do names of lengths up to 127 apart
/// that end alike (31 is odd, so `31 * len` is distinct modulo 128).
#[inline]
fn tag(name: &[u8]) -> u8 {
    tag_of(name.len(), name.last().copied().unwrap_or(0))
}

#[inline]
fn tag_of(len: usize, last: u8) -> u8 {
    ((len as u8).wrapping_mul(31) ^ last) & 0x7f
}

/// The tag of an unused slot: its high bit set, so no name's tag matches it.
const NO_NAME: u8 = 0x80;

impl SmallSpans {
    const fn new() -> Self {
        Self {
            len: 0,
            tags: [NO_NAME; SMALL],
            spans: [(0, 0); SMALL],
        }
    }

    /// The spans of the space-separated names of `bytes` (at most [`SMALL_BUF`] long), in
    /// order; `None` past [`SMALL`] names.
    #[inline]
    fn of_space_delimited(bytes: &[u8]) -> Option<Self> {
        let mut set = Self::new();
        let mut len = 0;
        let mut start = 0;
        let mut fits = true;
        // A name ends at `end` (a space or the end of the list); empty names are skipped.
        // Offsets fit `u16`: `end <= bytes.len() <= SMALL_BUF`.
        let mut name_ends_at = |end: usize| {
            if end > start {
                match (
                    set.spans.get_mut(len),
                    set.tags.get_mut(len),
                    bytes.get(end - 1),
                ) {
                    (Some(span), Some(tag), Some(&last)) => {
                        *span = (start as u16, end as u16);
                        *tag = tag_of(end - start, last);
                        len += 1;
                    }
                    _ => fits = false,
                }
            }
            start = end + 1;
        };
        for_each_space(bytes, &mut name_ends_at);
        name_ends_at(bytes.len());
        if !fits {
            return None;
        }
        // At most SMALL.
        set.len = len as u8;
        Some(set)
    }

    /// Appends the name `buf[start..end]` (non-empty, `end <= SMALL_BUF`); `false` when full.
    #[inline]
    fn push(&mut self, buf: &[u8], start: usize, end: usize) -> bool {
        let i = usize::from(self.len);
        let (Some(span), Some(slot_tag)) = (self.spans.get_mut(i), self.tags.get_mut(i)) else {
            return false;
        };
        *span = (start as u16, end as u16);
        *slot_tag = tag(buf.get(start..end).unwrap_or_default());
        self.len += 1;
        true
    }

    fn len(&self) -> usize {
        usize::from(self.len)
    }

    fn span(&self, i: usize) -> Option<(usize, usize)> {
        self.spans
            .get(i)
            .map(|&(s, e)| (usize::from(s), usize::from(e)))
    }

    /// `true` when `name` is among the first `limit` names of `buf`.
    #[inline]
    fn find(&self, buf: &[u8], name: &[u8], limit: usize) -> bool {
        let Some(&last) = name.last() else {
            return false;
        };
        self.find_tagged(buf, name, tag_of(name.len(), last), limit)
    }

    /// [`find`](Self::find) for a non-empty `name` whose tag is known: in each half of the
    /// tags, one word operation marks the slots with that tag (unused slots never match), and
    /// only those are compared, in order.
    #[inline(always)]
    fn find_tagged(&self, buf: &[u8], name: &[u8], tag: u8, limit: usize) -> bool {
        let splat = ONES * u64::from(tag);
        for half in 0..2 {
            let mut le = [0u8; 8];
            le.copy_from_slice(
                self.tags
                    .get(8 * half..8 * half + 8)
                    .unwrap_or(&[NO_NAME; 8]),
            );
            // The high bit of each byte whose tag matches.
            let mut candidates = zero_bytes(u64::from_le_bytes(le) ^ splat);
            while candidates != 0 {
                let i = 8 * half + (candidates.trailing_zeros() / 8) as usize;
                candidates &= candidates - 1;
                if i >= limit {
                    return false;
                }
                // The tag matched: compare the bytes (lengths first).
                if let Some((start, end)) = self.span(i)
                    && buf
                        .get(start..end)
                        .is_some_and(|kept| same_bytes(kept, name))
                {
                    return true;
                }
            }
        }
        false
    }
}

/// A name prepared for repeated lookups: its hash computed once (the authorization layers
/// prepare the names they require when they are built).
#[cfg(feature = "authz")]
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NameKey {
    hash: u64,
    tag: u8,
    name: Box<str>,
}

#[cfg(feature = "authz")]
impl NameKey {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            hash: name_hash(name.as_bytes()),
            tag: tag(name.as_bytes()),
            name: name.into(),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.name
    }
}

/// A fast, fixed (unseeded) 64-bit hash of a name, eight bytes per step (the `FxHasher`
/// multiply-rotate step with a final avalanche). Not collision resistant, and it need not be:
/// a hash only narrows the search, the bytes decide, and a crafted collision costs one more
/// comparison, never a wrong answer.
fn name_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    let step = |h: u64, word: u64| (h ^ word).wrapping_mul(K).rotate_left(26);
    let mut h = step(0, bytes.len() as u64);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = step(h, u64::from_le_bytes(word));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // Shifts rather than a copy into a padded array (a `memcpy` call for a variable length).
        let word = rest
            .iter()
            .enumerate()
            .fold(0u64, |w, (i, &b)| w | u64::from(b) << (8 * i));
        h = step(h, word);
    }
    // Murmur3's finaliser, so that the high bits (which decide the order) depend on every byte.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// Calls `f` with the index of every space in `bytes`, in order: eight bytes per step, with
/// the exact zero-byte test (no false positives) on the word XOR eight spaces.
fn for_each_space(bytes: &[u8], mut f: impl FnMut(usize)) {
    const SPACES: u64 = 0x2020_2020_2020_2020;
    let mut chunks = bytes.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        // The spaces are the zero bytes of the word XOR eight spaces.
        let mut found = zero_bytes(u64::from_le_bytes(word) ^ SPACES);
        while found != 0 {
            f(base + (found.trailing_zeros() / 8) as usize);
            found &= found - 1;
        }
        base += 8;
    }
    for (i, &b) in chunks.remainder().iter().enumerate() {
        if b == b' ' {
            f(base + i);
        }
    }
}

impl NameSet {
    /// Parses a space-delimited list, the OAuth `scope` format (RFC 6749 §3.3).
    #[must_use]
    pub fn from_space_delimited(list: &str) -> Self {
        let bytes = list.as_bytes();
        // The usual case: a few names. One pass over the spaces, eight bytes at a time, straight
        // into the inline spans; the list itself becomes the buffer (one exact allocation).
        if bytes.len() <= SMALL_BUF
            && let Some(small) = SmallSpans::of_space_delimited(bytes)
        {
            return Self {
                buf: list.into(),
                index: Index::Small(small),
            };
        }
        if u32::try_from(list.len()).is_err() {
            // Over 4 GiB: not worth a fast path.
            return list.split(' ').collect();
        }
        // Many names, or a long list: read again into an exactly sized vector, then index.
        let mut count = 1;
        for_each_space(bytes, |_| count += 1);
        let mut spans = Vec::with_capacity(count);
        // Every offset is at most `list.len()`, which fits `u32`.
        let mut start = 0usize;
        let mut name = |end: usize| {
            if end > start {
                spans.push((start as u32, end as u32));
            }
            start = end + 1;
        };
        for_each_space(bytes, &mut name);
        name(bytes.len());
        Self::index(list.into(), spans)
    }

    /// Indexes `spans` of `buf`: inline when few (duplicates kept, skipped when read), else by
    /// hash (later duplicates dropped).
    fn index(buf: Box<str>, spans: Vec<(u32, u32)>) -> Self {
        if spans.len() <= SMALL && buf.len() <= SMALL_BUF {
            let mut small = SmallSpans::new();
            for &(start, end) in &spans {
                // At most SMALL spans, within `buf`.
                small.push(buf.as_bytes(), start as usize, end as usize);
            }
            return Self {
                buf,
                index: Index::Small(small),
            };
        }
        let bytes = |&(s, e): &(u32, u32)| {
            buf.as_bytes()
                .get(s as usize..e as usize)
                .unwrap_or_default()
        };
        // Spans fit `u32` offsets, so their count does too.
        let mut by_hash: Vec<(u64, u32)> = spans
            .iter()
            .zip(0u32..)
            .map(|(span, i)| (name_hash(bytes(span)), i))
            .collect();
        by_hash.sort_unstable();
        // A later duplicate sits in the same run of equal hashes as its first occurrence, after
        // it (ties sort by index).
        let is_dup = |k: usize| {
            let (h, i) = by_hash[k];
            by_hash[..k]
                .iter()
                .rev()
                .take_while(|&&(g, _)| g == h)
                .any(|&(_, j)| bytes(&spans[j as usize]) == bytes(&spans[i as usize]))
        };
        let has_dups = (1..by_hash.len()).any(|k| by_hash[k].0 == by_hash[k - 1].0 && is_dup(k));
        if !has_dups {
            return Self {
                buf,
                index: Index::Large {
                    spans: spans.into_boxed_slice(),
                    by_hash: by_hash.into_boxed_slice(),
                },
            };
        }
        let mut dup = vec![false; spans.len()];
        for k in 1..by_hash.len() {
            if by_hash[k].0 == by_hash[k - 1].0 && is_dup(k) {
                dup[by_hash[k].1 as usize] = true;
            }
        }
        // New index of each kept span: monotonic, so `by_hash` stays sorted.
        let mut new_index = vec![0u32; spans.len()];
        let mut next = 0u32;
        for (i, &d) in dup.iter().enumerate() {
            new_index[i] = next;
            next += u32::from(!d);
        }
        let kept: Box<[(u32, u32)]> = spans
            .iter()
            .zip(&dup)
            .filter(|&(_, &d)| !d)
            .map(|(&span, _)| span)
            .collect();
        let by_hash: Box<[(u64, u32)]> = by_hash
            .iter()
            .filter(|&&(_, i)| !dup[i as usize])
            .map(|&(h, i)| (h, new_index[i as usize]))
            .collect();
        Self {
            buf,
            index: Index::Large {
                spans: kept,
                by_hash,
            },
        }
    }

    /// Number of distinct names.
    #[must_use]
    pub fn len(&self) -> usize {
        match &self.index {
            Index::Small(small) => (0..small.len())
                .filter(|&i| !self.repeats_earlier(i))
                .count(),
            Index::Large { spans, .. } => spans.len(),
        }
    }

    /// `true` when there are no names.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        match &self.index {
            Index::Small(small) => small.len() == 0,
            Index::Large { spans, .. } => spans.is_empty(),
        }
    }

    /// `true` when the `i`th name of a small set repeats an earlier one (a large set holds no
    /// duplicates).
    fn repeats_earlier(&self, i: usize) -> bool {
        let Index::Small(small) = &self.index else {
            return false;
        };
        small.find(self.buf.as_bytes(), self.name_at(i).as_bytes(), i)
    }

    /// `true` when `name` is in the set: among up to 16 names, those with its tag (length and
    /// last byte) found in one step and compared; `O(log n)` in larger sets.
    #[must_use]
    pub fn contains(&self, name: &str) -> bool {
        match &self.index {
            Index::Small(small) => small.find(self.buf.as_bytes(), name.as_bytes(), SMALL),
            Index::Large { .. } => {
                self.contains_hashed(name_hash(name.as_bytes()), name.as_bytes())
            }
        }
    }

    /// [`contains`](Self::contains) for a name whose hash and tag were computed once.
    #[cfg(feature = "authz")]
    #[inline(always)]
    pub(crate) fn contains_key(&self, key: &NameKey) -> bool {
        match &self.index {
            Index::Small(_) if key.name.is_empty() => false,
            Index::Small(small) => {
                small.find_tagged(self.buf.as_bytes(), key.name.as_bytes(), key.tag, SMALL)
            }
            Index::Large { .. } => self.contains_hashed(key.hash, key.name.as_bytes()),
        }
    }

    fn contains_hashed(&self, hash: u64, name: &[u8]) -> bool {
        let Index::Large { by_hash, .. } = &self.index else {
            return false;
        };
        let first = by_hash.partition_point(|&(h, _)| h < hash);
        by_hash
            .get(first..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&(h, _)| h == hash)
            .any(|&(_, i)| same_bytes(self.name_at(i as usize).as_bytes(), name))
    }

    /// The `i`th name, in the order given (`""` past the end).
    fn name_at(&self, i: usize) -> &str {
        let span = match &self.index {
            Index::Small(small) => small.span(i),
            Index::Large { spans, .. } => spans.get(i).map(|&(s, e)| (s as usize, e as usize)),
        };
        // Spans are built from `buf` itself and point at char boundaries.
        span.and_then(|(start, end)| self.buf.get(start..end))
            .unwrap_or("")
    }

    /// `true` when every one of `names` is in the set (vacuously true for none).
    pub fn contains_all<I>(&self, names: I) -> bool
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        names.into_iter().all(|n| self.contains(n.as_ref()))
    }

    /// `true` when at least one of `names` is in the set (false for none).
    pub fn contains_any<I>(&self, names: I) -> bool
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        names.into_iter().any(|n| self.contains(n.as_ref()))
    }

    /// The names in the order they were given (first occurrences).
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        Names {
            set: self,
            next: 0,
            remaining: self.len(),
        }
    }
}

/// The iterator of [`NameSet::iter`]: first occurrences, in order.
struct Names<'a> {
    set: &'a NameSet,
    next: usize,
    remaining: usize,
}

impl<'a> Iterator for Names<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        while self.remaining > 0 {
            let i = self.next;
            self.next += 1;
            if !self.set.repeats_earlier(i) {
                self.remaining -= 1;
                return Some(self.set.name_at(i));
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Names<'_> {}

/// Set equality: the same names, in any order.
impl PartialEq for NameSet {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|name| other.contains(name))
    }
}

impl Eq for NameSet {}

impl<S: AsRef<str>> FromIterator<S> for NameSet {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut iter = iter.into_iter();
        // The first names are held (borrowed, when the iterator lends them) until their total
        // length is known, so that a small set costs one exact allocation: the buffer.
        let mut head: [Option<S>; SMALL] = std::array::from_fn(|_| None);
        let mut total = 0usize;
        for slot in &mut head {
            let Some(name) = iter.next() else {
                break;
            };
            total = total.saturating_add(name.as_ref().len());
            *slot = Some(name);
        }
        // A 17th name (or `None`, and then the iterator is not asked again).
        let next = if head[SMALL - 1].is_some() {
            iter.next()
        } else {
            None
        };
        let head = head.iter().map_while(Option::as_ref).map(AsRef::as_ref);
        if next.is_none() && total <= SMALL_BUF {
            let mut buf = String::with_capacity(total);
            let mut small = SmallSpans::new();
            for name in head.filter(|name| !name.is_empty()) {
                let start = buf.len();
                buf.push_str(name);
                // At most SMALL names, `buf.len() <= total <= SMALL_BUF`.
                small.push(buf.as_bytes(), start, buf.len());
            }
            return Self {
                buf: buf.into_boxed_str(),
                index: Index::Small(small),
            };
        }
        let mut buf = String::new();
        let mut spans: Vec<(u32, u32)> = Vec::with_capacity(SMALL + 1 + iter.size_hint().0);
        let mut add = |name: &str| {
            if name.is_empty() {
                return true;
            }
            let start = buf.len();
            let end = start + name.len();
            // Past 4 GiB of names the rest is dropped rather than mis-indexed.
            let (Ok(s), Ok(e)) = (u32::try_from(start), u32::try_from(end)) else {
                return false;
            };
            buf.push_str(name);
            spans.push((s, e));
            true
        };
        let mut room = head.into_iter().all(&mut add);
        if let (true, Some(name)) = (room, &next) {
            room = add(name.as_ref());
        }
        if room {
            for name in iter {
                if !add(name.as_ref()) {
                    break;
                }
            }
        }
        Self::index(buf.into_boxed_str(), spans)
    }
}

impl fmt::Debug for NameSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a NameSet {
    type Item = &'a str;
    type IntoIter = Box<dyn ExactSizeIterator<Item = &'a str> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// Joins names with single spaces, the OAuth `scope` format.
impl fmt::Display for NameSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

impl From<&str> for NameSet {
    /// Same as [`NameSet::from_space_delimited`].
    fn from(list: &str) -> Self {
        Self::from_space_delimited(list)
    }
}

impl From<Cow<'_, str>> for NameSet {
    fn from(list: Cow<'_, str>) -> Self {
        Self::from_space_delimited(&list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn debug_shows_attribute_names_not_values() {
        let p = Principal::builder("u", CredentialKind::Jwt)
            .attribute("session_secret", "hunter2-very-secret")
            .build();
        let dbg = format!("{p:?}");
        assert!(dbg.contains("session_secret"));
        assert!(!dbg.contains("hunter2"));
    }

    #[test]
    fn anonymous_is_shared_and_anonymous() {
        let a = Principal::anonymous();
        let b = Principal::anonymous();
        assert!(Arc::ptr_eq(&a.inner, &b.inner));
        assert!(a.is_anonymous());
        assert!(a.scopes().is_empty());
    }

    #[test]
    fn into_builder_keeps_fields() {
        let p = Principal::builder("u", CredentialKind::ApiKey)
            .tenant("t")
            .scopes(["a"])
            .build();
        let q = p.clone().into_builder().attribute("x", 1).build();
        assert_eq!(q.tenant(), Some("t"));
        assert!(q.scopes().contains("a"));
        assert_eq!(q.attribute("x"), Some(&Value::from(1)));
        assert!(p.attribute("x").is_none());
    }

    #[test]
    fn spaces_are_found_at_every_offset() {
        for len in 0..40 {
            for bits in [0u64, u64::MAX, 0x5555_5555_5555, 0x8421_0842_1084, 1 << 17] {
                let bytes: Vec<u8> = (0..len)
                    .map(|i| {
                        if bits >> (i % 64) & 1 == 1 {
                            b' '
                        } else {
                            b'a' + (i % 26) as u8
                        }
                    })
                    .collect();
                let mut found = Vec::new();
                for_each_space(&bytes, |i| found.push(i));
                let expected: Vec<usize> = (0..len).filter(|&i| bytes[i] == b' ').collect();
                assert_eq!(found, expected, "{:?}", String::from_utf8_lossy(&bytes));
            }
        }
        // Bytes whose low seven bits are a space's, and non-ASCII, are not spaces.
        let mut found = Vec::new();
        for_each_space("\u{a0} \u{120}x \u{2020}".as_bytes(), |i| found.push(i));
        assert_eq!(found, [2, 6]);
    }

    #[test]
    fn small_and_large_sets_agree() {
        for n in [0, 1, SMALL - 1, SMALL, SMALL + 1, 3 * SMALL] {
            let names: Vec<String> = (0..n)
                .map(|i| format!("scope:{}", i % (n.max(2) - 1)))
                .collect();
            let spaced = NameSet::from_space_delimited(&names.join(" "));
            let collected: NameSet = names.iter().collect();
            let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
            for set in [&spaced, &collected] {
                assert_eq!(set.len(), distinct.len(), "{n}");
                assert!(distinct.iter().all(|name| set.contains(name)), "{n}");
                assert!(!set.contains("scope:x") && !set.contains(""), "{n}");
                #[cfg(feature = "authz")]
                assert!(
                    distinct
                        .iter()
                        .all(|name| set.contains_key(&NameKey::new(name))),
                    "{n}"
                );
            }
            assert_eq!(spaced, collected);
        }
    }

    #[test]
    fn a_hash_match_alone_is_not_membership() {
        let many: Vec<String> = (0..2 * SMALL).map(|i| format!("orders:{i}")).collect();
        let set = NameSet::from_space_delimited(&format!("orders:read {}", many.join(" ")));
        assert!(matches!(set.index, Index::Large { .. }));
        // As if "orders:delete" collided with "orders:read": the bytes still decide.
        assert!(!set.contains_hashed(name_hash(b"orders:read"), b"orders:delete"));
        assert!(set.contains_hashed(name_hash(b"orders:read"), b"orders:read"));
        // Word boundaries of the hash: 7, 8, 9 and 16 bytes.
        let set = NameSet::from_space_delimited("abcdefg abcdefgh abcdefghi abcdefghijklmnop");
        for name in ["abcdefg", "abcdefgh", "abcdefghi", "abcdefghijklmnop"] {
            assert!(set.contains(name), "{name}");
        }
        assert!(!set.contains("abcdefghijklmno"));
        assert!(!NameSet::default().contains(""));
    }

    #[test]
    fn lookups_compare_every_byte_at_every_length() {
        // Long names, and names whose tags coincide: their spans and bytes decide.
        let lengths = [1, 7, 8, 16, 17, 254, 255, 256, 257, 300];
        assert_eq!(tag(&[b'n'; 1]), tag(&[b'n'; 257]));
        let set: NameSet = lengths.iter().map(|&n| "n".repeat(n)).collect();
        assert!(matches!(set.index, Index::Small(_)));
        for n in 0..310 {
            assert_eq!(set.contains(&"n".repeat(n)), lengths.contains(&n), "{n}");
        }
        assert!(!set.contains(&format!("{}m", "n".repeat(255))));
    }

    #[test]
    fn duplicates_are_invisible_to_every_reader() {
        // Small sets keep repeated spans and skip them when counting or listing; a set of more
        // than 16 spans drops them when it is indexed. Both must read the same.
        for raw in [
            "a b a c b a",
            "x x x x x x x x x x x x x x x y",
            "x x x x x x x x x x x x x x x x x y x",
        ] {
            let spaced = NameSet::from_space_delimited(raw);
            let collected: NameSet = raw.split(' ').collect();
            let mut first: Vec<&str> = Vec::new();
            for name in raw.split(' ') {
                if !first.contains(&name) {
                    first.push(name);
                }
            }
            for set in [&spaced, &collected] {
                assert_eq!(set.len(), first.len(), "{raw}");
                assert_eq!(set.iter().len(), first.len(), "{raw}");
                assert_eq!(set.iter().collect::<Vec<_>>(), first, "{raw}");
                assert_eq!(set.to_string(), first.join(" "), "{raw}");
                assert_eq!(format!("{set:?}").matches('"').count(), 2 * first.len());
            }
            assert_eq!(spaced, collected);
            assert_eq!(spaced, first.iter().collect::<NameSet>());
        }
        // 16 distinct names fit inline; the 17th does not.
        let sixteen: Vec<String> = (0..SMALL).map(|i| format!("s{i}")).collect();
        assert!(matches!(
            NameSet::from_space_delimited(&sixteen.join(" ")).index,
            Index::Small(SmallSpans { len: 16, .. })
        ));
        let collected: NameSet = sixteen.iter().collect();
        assert!(matches!(
            collected.index,
            Index::Small(SmallSpans { len: 16, .. })
        ));
        let collected: NameSet = sixteen.iter().chain(["s16".to_owned()].iter()).collect();
        assert!(matches!(collected.index, Index::Large { .. }));
        assert_eq!(collected.len(), 17);
        assert!(collected.contains("s16") && collected.contains("s0"));
        let seventeen = format!("{} s16", sixteen.join(" "));
        let set = NameSet::from_space_delimited(&seventeen);
        assert!(matches!(set.index, Index::Large { .. }));
        assert_eq!(set.len(), 17);
        // A list longer than 16-bit offsets reach is indexed too, and still found.
        let long = format!("{} tail", "x".repeat(SMALL_BUF));
        let set = NameSet::from_space_delimited(&long);
        assert!(matches!(set.index, Index::Large { .. }));
        assert!(set.contains("tail") && set.contains(&"x".repeat(SMALL_BUF)));
        let set: NameSet = [&"y".repeat(SMALL_BUF), "tail"].into_iter().collect();
        assert!(set.contains("tail") && set.len() == 2);
    }

    #[test]
    fn display_keeps_the_given_order_without_duplicates() {
        let set = NameSet::from_space_delimited("  b a  c a b ");
        assert_eq!(set.to_string(), "b a c");
        assert_eq!(set.iter().collect::<Vec<_>>(), ["b", "a", "c"]);
        assert_eq!(set, NameSet::from_space_delimited("c b a"));
        assert_ne!(set, NameSet::from_space_delimited("c b"));
        assert_ne!(set, NameSet::from_space_delimited("c b d"));
        assert!(NameSet::from_space_delimited("   ").is_empty());
        assert_eq!(NameSet::from_space_delimited(""), NameSet::default());
    }

    proptest! {
        #[test]
        fn name_set_contains_exactly_its_inputs(names in proptest::collection::vec("[a-z:./]{0,19}", 0..20), probe in "[a-z:./]{0,19}") {
            let set: NameSet = names.iter().collect();
            let expected: std::collections::BTreeSet<&str> = names.iter().map(String::as_str).filter(|n| !n.is_empty()).collect();
            let mut first_occurrences: Vec<&str> = Vec::new();
            for name in names.iter().filter(|n| !n.is_empty()) {
                if !first_occurrences.contains(&name.as_str()) {
                    first_occurrences.push(name);
                }
            }
            prop_assert_eq!(set.len(), expected.len());
            prop_assert_eq!(set.iter().collect::<Vec<_>>(), first_occurrences);
            let spaced = names.iter().filter(|n| !n.contains(' ')).cloned().collect::<Vec<_>>();
            prop_assert_eq!(NameSet::from_space_delimited(&spaced.join("  ")), spaced.iter().collect::<NameSet>());
            prop_assert_eq!(set.contains(&probe), expected.contains(probe.as_str()));
            #[cfg(feature = "authz")]
            prop_assert_eq!(set.contains_key(&NameKey::new(&probe)), expected.contains(probe.as_str()));
            for name in &expected {
                prop_assert!(set.contains(name));
            }
        }

        #[test]
        fn space_delimited_round_trips(names in proptest::collection::btree_set("[!#-\\[\\]-~]{1,8}", 0..10)) {
            let joined = names.iter().cloned().collect::<Vec<_>>().join(" ");
            let set = NameSet::from_space_delimited(&joined);
            prop_assert_eq!(set.to_string(), joined);
        }
    }
}

#[cfg(feature = "axum")]
pub use self::axum_extractor::PrincipalRejection;

#[cfg(feature = "axum")]
mod axum_extractor {
    use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum_core::response::{IntoResponse, Response};
    use http::request::Parts;

    use super::Principal;
    use crate::error::{Error, ErrorKind};
    use crate::response::{Challenges, DefaultResponder, reject};

    /// The rejection of the [`Principal`] extractor: `401` with the route's challenges.
    ///
    /// Returned when the request is anonymous (optional mode) or carries no `Principal` at all
    /// (no `Authenticate` layer in front of the handler: a configuration mistake, logged at
    /// warn level).
    #[derive(Debug)]
    pub struct PrincipalRejection {
        challenges: Challenges,
        grpc: bool,
    }

    impl IntoResponse for PrincipalRejection {
        fn into_response(self) -> Response {
            let mut headers = http::HeaderMap::new();
            if self.grpc {
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/grpc"),
                );
            }
            reject(
                &DefaultResponder,
                Error::new(ErrorKind::AuthenticationRequired),
                &self.challenges,
                &headers,
            )
        }
    }

    fn rejection(parts: &Parts) -> PrincipalRejection {
        PrincipalRejection {
            challenges: parts
                .extensions
                .get::<Challenges>()
                .cloned()
                .unwrap_or_default(),
            grpc: crate::response::is_grpc(&parts.headers),
        }
    }

    /// Takes the authenticated [`Principal`]; anonymous or missing is `401`.
    ///
    /// ```
    /// use credentialflow::Principal;
    ///
    /// async fn whoami(principal: Principal) -> String {
    ///     principal.subject().to_owned()
    /// }
    /// # let _: axum::routing::MethodRouter = axum::routing::get(whoami);
    /// ```
    impl<S: Send + Sync> FromRequestParts<S> for Principal {
        type Rejection = PrincipalRejection;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            match parts.extensions.get::<Principal>() {
                Some(p) if !p.is_anonymous() => Ok(p.clone()),
                Some(_) => Err(rejection(parts)),
                None => {
                    tracing::warn!(
                        "Principal extractor used on a route without an Authenticate layer"
                    );
                    Err(rejection(parts))
                }
            }
        }
    }

    /// `Option<Principal>`: `None` for an anonymous request. A route without an `Authenticate`
    /// layer is still `401`, so that a missing layer cannot pass for an anonymous caller.
    ///
    /// ```
    /// use credentialflow::Principal;
    ///
    /// async fn greet(principal: Option<Principal>) -> String {
    ///     match principal {
    ///         Some(p) => format!("hello {}", p.subject()),
    ///         None => "hello stranger".to_owned(),
    ///     }
    /// }
    /// # let _: axum::routing::MethodRouter = axum::routing::get(greet);
    /// ```
    impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
        type Rejection = PrincipalRejection;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            match parts.extensions.get::<Principal>() {
                Some(p) if p.is_anonymous() => Ok(None),
                Some(p) => Ok(Some(p.clone())),
                None => {
                    tracing::warn!(
                        "Option<Principal> extractor used on a route without an Authenticate layer"
                    );
                    Err(rejection(parts))
                }
            }
        }
    }
}
