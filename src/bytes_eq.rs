//! Byte comparisons for short, hot strings (scope names, key prefixes).

/// `a == b`, without a `memcmp` call for slices of 4 to 16 bytes (most names and prefixes):
/// two overlapping word loads per side.
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    fn word<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
        let mut w = [0u8; N];
        if let Some(src) = bytes.get(at..at + N) {
            w.copy_from_slice(src);
        }
        w
    }
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        8..=16 => word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, n - 8) == word::<8>(b, n - 8),
        4..=7 => word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_counts_at_every_length() {
        for n in 0..40 {
            let a: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(same_bytes(&a, &a.clone()), "{n}");
            assert!(!same_bytes(&a, &[a.as_slice(), b"x"].concat()), "{n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x01;
                assert!(!same_bytes(&a, &b), "{n} {at}");
            }
        }
    }
}
