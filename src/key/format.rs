//! The API key format: prefix, public id, secret, checksum.

use std::fmt;

use crate::bytes_eq::same_bytes;
use crate::error::ConfigError;

/// Length of the public id, in base62 characters (about 71 bits).
pub const ID_LEN: usize = 12;
/// Length of the secret, in base62 characters (about 190 bits of entropy).
pub const SECRET_LEN: usize = 32;
/// Length of the checksum, in base62 characters (a CRC-32).
pub const CHECKSUM_LEN: usize = 6;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The value of each byte as a base62 digit; `INVALID` for bytes that are not one.
static BASE62_VALUE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < BASE62.len() {
        table[BASE62[i] as usize] = i as u8;
        i += 1;
    }
    table
};
const INVALID: u8 = 0xff;

pub(crate) fn base62_char(index: u8) -> u8 {
    BASE62[usize::from(index % 62)]
}

/// Length of what follows the prefix and its `_`: `id "_" secret checksum`.
const TAIL_LEN: usize = ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN;

/// `true` when `tail` is base62 everywhere but for one `_`, at `ID_LEN`.
///
/// Every byte is looked at whatever the input, with comparisons rather than table lookups, so
/// that the compiler checks many bytes at once (16 with x86-64's baseline SSE2) instead of
/// loading a table entry per byte.
fn tail_is_well_formed(tail: &[u8; TAIL_LEN]) -> bool {
    let mut bad = 0u8;
    let mut underscores = 0u8;
    for &b in tail {
        let digit = b.wrapping_sub(b'0') < 10;
        // Setting bit 5 folds `A`-`Z` onto `a`-`z`; nothing else lands there.
        let letter = (b | 0x20).wrapping_sub(b'a') < 26;
        let underscore = b == b'_';
        bad |= u8::from(!(digit | letter | underscore));
        underscores += u8::from(underscore);
    }
    (bad == 0) & (underscores == 1) & (tail[ID_LEN] == b'_')
}

/// CRC-32 (ISO-HDLC, the zlib one) of `body`, as 6 base62 characters, most significant first.
pub(crate) fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut n = u64::from(crc32fast::hash(body));
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// `true` when `given` (base62, checked by the caller) is the CRC-32 of the marker (whose
/// state is `marker`) followed by `rest`.
fn checksum_matches(marker: &crc32fast::Hasher, rest: &[u8], given: &[u8]) -> bool {
    // The checksum is public information (it is computed from the key itself), so a plain
    // comparison leaks nothing; it exists to catch typos before any lookup.
    let value = given.iter().fold(0u64, |value, &b| {
        value * 62 + u64::from(BASE62_VALUE[usize::from(b)])
    });
    // A clone: the hasher picked its implementation for this CPU once, when it was made.
    let mut crc = marker.clone();
    crc.update(rest);
    value == u64::from(crc.finalize())
}

/// The API key format, with its prefix.
///
/// ```text
/// key      = prefix "_" id "_" secret checksum
/// prefix   = ALPHA *31( ALPHA / DIGIT / "_" )      ; configured, e.g. "cf_live"
/// id       = 12base62                              ; public: logs, Principal::credential_id
/// secret   = 32base62                              ; drawn from the OS CSPRNG
/// checksum = 6base62                               ; CRC-32 of prefix "_" id "_" secret
/// base62   = DIGIT / ALPHA                         ; 0-9 A-Z a-z
/// ```
///
/// The checksum is the CRC-32 used by zlib, gzip and PNG (ISO-HDLC: polynomial `0x04C11DB7`,
/// reflected, initial value and final XOR `0xFFFFFFFF`) of every byte before it, written as a
/// number in base 62 with exactly six digits, most significant first, the digits being
/// `0`-`9`, `A`-`Z`, `a`-`z` for the values 0 to 61 (so a checksum below 62⁵ starts with `0`).
/// The prefix is at most 32 characters, so a key is at most 84 characters long; with the
/// prefix `cf_live`, 59.
///
/// An example, with the id `3kT9xQ2mBv7P` and the checksum `2A5YD4`:
///
/// ```
/// use credentialflow::key::KeyFormat;
///
/// let format = KeyFormat::new("cf_live")?;
/// let key = "cf_live_3kT9xQ2mBv7P_Zr4c8WnLq0aJm5Ye2TsVbX9hKd1Fg6Ru2A5YD4";
/// assert_eq!(format.parse(key)?.id(), "3kT9xQ2mBv7P");
/// // One character changed anywhere, and the checksum no longer matches.
/// assert!(format.parse("cf_live_3kT9xQ2mBv7P_Zr4c8WnLq0aJm5Ye2TsVbX9hKd1Fg6Ru2A5YD5").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// - The **prefix** makes a leaked key recognisable to secret scanners and tells which system
///   (and environment) it belongs to. A string without this prefix is not an API key of this
///   format: an authenticator treats it as absent, so a JWT or another system's key falls
///   through to the next authenticator.
/// - The **id** is the key's public name: it is looked up in the store and appears in logs,
///   audit events and [`Principal::credential_id`](crate::Principal::credential_id).
/// - The **secret** is stored only as a hash.
/// - The **checksum** (CRC-32, which detects every change of a single character and every burst
///   error of up to 32 bits) rejects typos and random garbage before any store lookup.
#[derive(Clone)]
pub struct KeyFormat {
    /// The prefix and its `_`: what every key of this format starts with.
    marker: Box<[u8]>,
    /// The CRC-32 state after `marker`, from which each key's checksum resumes.
    marker_crc: crc32fast::Hasher,
}

impl PartialEq for KeyFormat {
    fn eq(&self, other: &Self) -> bool {
        self.marker == other.marker
    }
}

impl Eq for KeyFormat {}

impl KeyFormat {
    /// The format with `prefix`.
    ///
    /// # Errors
    ///
    /// When the prefix is empty, longer than 32 characters, does not start with an ASCII letter,
    /// or holds a character other than ASCII letters, digits and `_`.
    pub fn new(prefix: &str) -> Result<Self, ConfigError> {
        let ok = (1..=32).contains(&prefix.len())
            && prefix.as_bytes()[0].is_ascii_alphabetic()
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return Err(ConfigError::new(format!(
                "API key prefix {prefix:?} must be 1-32 ASCII letters, digits or '_', starting with a letter"
            )));
        }
        let marker = format!("{prefix}_").into_bytes().into_boxed_slice();
        let mut marker_crc = crc32fast::Hasher::new();
        marker_crc.update(&marker);
        Ok(Self { marker, marker_crc })
    }

    /// The prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        // The marker is the prefix (ASCII, checked by `new`) and `_`.
        self.marker
            .split_last()
            .and_then(|(_, prefix)| std::str::from_utf8(prefix).ok())
            .unwrap_or("")
    }

    /// The exact length of every key of this format.
    #[must_use]
    pub fn key_len(&self) -> usize {
        self.marker.len() + ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN
    }

    /// `true` when `key` starts with `<prefix>_`: the key is of this format's kind (it may still
    /// be malformed).
    #[must_use]
    pub fn recognises(&self, key: &str) -> bool {
        self.recognises_bytes(key.as_bytes())
    }

    #[inline]
    pub(crate) fn recognises_bytes(&self, key: &[u8]) -> bool {
        key.get(..self.marker.len())
            .is_some_and(|start| same_bytes(start, &self.marker))
    }

    /// Parses and checks a key.
    ///
    /// # Errors
    ///
    /// [`KeyParseError::NotThisFormat`] when the prefix differs (the caller should treat the
    /// credential as absent); [`KeyParseError::Malformed`] for a wrong length or character;
    /// [`KeyParseError::Checksum`] when the checksum does not match.
    pub fn parse<'k>(&self, key: &'k str) -> Result<ParsedKey<'k>, KeyParseError> {
        self.parse_bytes(key.as_bytes())
    }

    /// [`parse`](Self::parse) on bytes as they came (a key that parses is ASCII). Every byte
    /// of a key that passes, or fails only its checksum, is a letter, a digit or `_`.
    pub(crate) fn parse_bytes<'k>(&self, key: &'k [u8]) -> Result<ParsedKey<'k>, KeyParseError> {
        if !self.recognises_bytes(key) {
            return Err(KeyParseError::NotThisFormat);
        }
        self.parse_recognised(key)
    }

    /// [`parse_bytes`](Self::parse_bytes) for a key already [recognised](Self::recognises).
    pub(crate) fn parse_recognised<'k>(
        &self,
        key: &'k [u8],
    ) -> Result<ParsedKey<'k>, KeyParseError> {
        let id_start = self.marker.len();
        let Some(Ok(tail)) = key.get(id_start..).map(<&[u8; TAIL_LEN]>::try_from) else {
            return Err(KeyParseError::Malformed);
        };
        if !tail_is_well_formed(tail) {
            return Err(KeyParseError::Malformed);
        }
        let (rest, check) = tail.split_at(TAIL_LEN - CHECKSUM_LEN);
        let (id, secret) = (&rest[..ID_LEN], &rest[ID_LEN + 1..]);
        if !checksum_matches(&self.marker_crc, rest, check) {
            return Err(KeyParseError::Checksum);
        }
        // Base62, so ASCII: these conversions cannot fail.
        match (std::str::from_utf8(id), std::str::from_utf8(secret)) {
            (Ok(id), Ok(secret)) => Ok(ParsedKey { id, secret }),
            _ => Err(KeyParseError::Malformed),
        }
    }

    /// Assembles a key from its id and secret (both base62, of the right lengths), adding the
    /// checksum.
    pub(crate) fn assemble(&self, id: &[u8; ID_LEN], secret: &[u8; SECRET_LEN]) -> String {
        let mut key = String::with_capacity(self.key_len());
        key.push_str(self.prefix());
        key.push('_');
        key.extend(id.iter().map(|&b| b as char));
        key.push('_');
        key.extend(secret.iter().map(|&b| b as char));
        let sum = checksum(key.as_bytes());
        key.extend(sum.iter().map(|&b| b as char));
        key
    }
}

impl fmt::Debug for KeyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFormat")
            .field("prefix", &self.prefix())
            .finish()
    }
}

/// A key that passed [`KeyFormat::parse`]: its id and secret, borrowed from the key.
/// `Debug` shows the id only.
#[derive(Clone, Copy)]
pub struct ParsedKey<'k> {
    id: &'k str,
    secret: &'k str,
}

impl<'k> ParsedKey<'k> {
    /// The public id.
    #[must_use]
    pub fn id(&self) -> &'k str {
        self.id
    }

    /// The secret part. Handle with care: never log it.
    #[must_use]
    pub fn secret(&self) -> &'k str {
        self.secret
    }
}

impl fmt::Debug for ParsedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedKey")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Why a string is not a valid key of a [`KeyFormat`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyParseError {
    /// Another prefix: not a key of this format at all.
    #[error("not a key of this format")]
    NotThisFormat,
    /// The right prefix, but a wrong length or character.
    #[error("malformed API key")]
    Malformed,
    /// The checksum does not match: a typo, or a made-up key.
    #[error("API key checksum mismatch")]
    Checksum,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fmt() -> KeyFormat {
        KeyFormat::new("cf_live").unwrap()
    }

    fn arb_part(len: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(0u8..62, len)
            .prop_map(|v| v.into_iter().map(base62_char).collect())
    }

    #[test]
    fn base62_table_is_the_alphabet() {
        for b in 0u8..=255 {
            let value = BASE62_VALUE[usize::from(b)];
            assert_eq!(value != INVALID, b.is_ascii_alphanumeric(), "{b:#x}");
            if value != INVALID {
                assert_eq!(BASE62[usize::from(value)], b);
            }
        }
    }

    #[test]
    fn the_tail_check_takes_base62_and_one_underscore_where_it_belongs() {
        let good: [u8; TAIL_LEN] = std::array::from_fn(|i| if i == ID_LEN { b'_' } else { b'a' });
        assert!(tail_is_well_formed(&good));
        for at in 0..TAIL_LEN {
            for b in 0u8..=255 {
                let mut tail = good;
                tail[at] = b;
                let expected = if at == ID_LEN {
                    b == b'_'
                } else {
                    BASE62_VALUE[usize::from(b)] != INVALID
                };
                assert_eq!(tail_is_well_formed(&tail), expected, "{b:#x} at {at}");
            }
        }
    }

    #[test]
    fn prefixes_are_validated() {
        for bad in ["", "1abc", "a-b", "a b", &"a".repeat(33)] {
            assert!(KeyFormat::new(bad).is_err(), "{bad:?}");
        }
        assert!(KeyFormat::new("cf_test").is_ok());
    }

    #[test]
    fn other_prefixes_are_not_this_format() {
        let f = fmt();
        assert_eq!(
            f.parse("cf_test_abc").unwrap_err(),
            KeyParseError::NotThisFormat
        );
        assert_eq!(
            f.parse("cf_live").unwrap_err(),
            KeyParseError::NotThisFormat
        );
        assert_eq!(
            f.parse("cf_liveX_a").unwrap_err(),
            KeyParseError::NotThisFormat
        );
        assert_eq!(
            f.parse("eyJhbGciOi.x.y").unwrap_err(),
            KeyParseError::NotThisFormat
        );
        assert_eq!(
            f.parse("cf_live_short").unwrap_err(),
            KeyParseError::Malformed
        );
    }

    #[test]
    fn checksum_is_six_chars_and_fits_u32() {
        assert_eq!(checksum(b"").len(), 6);
        // 62^6 > 2^32, so every CRC value is representable.
        assert!(62u64.pow(6) > u64::from(u32::MAX));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = fmt().parse(&s);
        }

        #[test]
        fn parse_never_panics_on_near_keys(s in "cf_live_[0-9A-Za-z_]{0,60}") {
            let _ = fmt().parse(&s);
        }

        #[test]
        fn the_tail_check_agrees_with_the_alphabet_table(
            base in arb_part(TAIL_LEN),
            changes in proptest::collection::vec(
                (
                    0..TAIL_LEN,
                    prop_oneof![
                        Just(b'_'),
                        (0u8..62).prop_map(base62_char),
                        any::<u8>(),
                    ],
                ),
                0..3,
            ),
        ) {
            // A well-formed tail, then up to two bytes changed: mostly near misses.
            let mut tail: [u8; TAIL_LEN] = base.try_into().unwrap();
            tail[ID_LEN] = b'_';
            for (at, b) in changes {
                tail[at] = b;
            }
            let expected = tail.iter().enumerate().all(|(i, &b)| {
                if i == ID_LEN { b == b'_' } else { BASE62_VALUE[usize::from(b)] != INVALID }
            });
            prop_assert_eq!(tail_is_well_formed(&tail), expected);
        }

        #[test]
        fn assembled_keys_parse_back(id in arb_part(ID_LEN), secret in arb_part(SECRET_LEN)) {
            let f = fmt();
            let id: [u8; ID_LEN] = id.try_into().unwrap();
            let secret: [u8; SECRET_LEN] = secret.try_into().unwrap();
            let key = f.assemble(&id, &secret);
            prop_assert_eq!(key.len(), f.key_len());
            let parsed = f.parse(&key).unwrap();
            prop_assert_eq!(parsed.id().as_bytes(), &id[..]);
            prop_assert_eq!(parsed.secret().as_bytes(), &secret[..]);
        }

        #[test]
        fn every_single_character_change_is_caught(
            id in arb_part(ID_LEN),
            secret in arb_part(SECRET_LEN),
            pos in 0usize..64,
            replacement in 0u8..62,
        ) {
            let f = fmt();
            let key = f.assemble(&id.try_into().unwrap(), &secret.try_into().unwrap());
            let start = f.prefix().len() + 1;
            let pos = start + pos % (key.len() - start);
            let mut bytes = key.clone().into_bytes();
            let new = if bytes[pos] == b'_' { b'x' } else { base62_char(replacement) };
            prop_assume!(new != bytes[pos]);
            bytes[pos] = new;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(f.parse(&changed).is_err(), "{} accepted", changed);
        }
    }
}
