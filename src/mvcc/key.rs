//! Order-preserving encodings for the `kv` and `rev` column families.
//!
//! A version of a user key is stored in the `kv` CF under
//!
//! ```text
//! escape(user_key) 0x00 0x00 | !main_revision (8 bytes, big-endian)
//! ```
//!
//! `escape` turns every 0x00 byte of the key into 0x00 0xFF, and the 0x00 0x00
//! terminator ends it. This makes the encoding of user keys prefix-free and
//! order-preserving (`a < b` exactly when `escape(a) 0 0 < escape(b) 0 0`), so
//! a range of user keys is a range of encoded keys, and all versions of one
//! key sit together. Inverting the revision puts the newest version first, so
//! "the newest version at or below revision R" is one seek to
//! `prefix | !R`.
//!
//! The `rev` CF is keyed by `main (8 bytes BE) | sub (8 bytes BE)`: the order
//! in which changes happened, which watch catch-up and compaction walk.

use std::borrow::Cow;

/// Length of the revision suffix of a `kv` key.
pub const REV_LEN: usize = 8;

/// Appends the escaped, terminated form of `user_key` to `out`.
pub fn push_prefix(out: &mut Vec<u8>, user_key: &[u8]) {
    out.reserve(user_key.len() + 2 + REV_LEN);
    for &b in user_key {
        if b == 0 {
            out.extend_from_slice(&[0, 0xFF]);
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// The encoded prefix shared by every version of `user_key`.
pub fn prefix(user_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    push_prefix(&mut out, user_key);
    out
}

/// The inverted big-endian form of a main revision.
pub fn inverted(main: i64) -> [u8; REV_LEN] {
    (!(main as u64)).to_be_bytes()
}

/// The `kv` key of `user_key` at revision `main`.
pub fn version_key(user_key: &[u8], main: i64) -> Vec<u8> {
    let mut out = prefix(user_key);
    out.extend_from_slice(&inverted(main));
    out
}

/// A key that sorts after every version of the key whose prefix is given:
/// revision 0 inverted, which no version has (revisions start at 1).
pub fn after_all_versions(prefix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + REV_LEN);
    out.extend_from_slice(prefix);
    out.extend_from_slice(&[0xFF; REV_LEN]);
    out
}

/// Splits a `kv` key into its prefix length and main revision.
pub fn split_version_key(k: &[u8]) -> Option<(usize, i64)> {
    if k.len() < 2 + REV_LEN {
        return None;
    }
    let plen = k.len() - REV_LEN;
    if k[plen - 2..plen] != [0, 0] {
        return None;
    }
    let inv = u64::from_be_bytes(k[plen..].try_into().ok()?);
    Some((plen, (!inv) as i64))
}

/// Recovers the user key from an encoded prefix (terminator included).
pub fn user_key(prefix: &[u8]) -> Option<Cow<'_, [u8]>> {
    let body = prefix.strip_suffix(&[0, 0])?;
    if !body.contains(&0) {
        return Some(Cow::Borrowed(body));
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == 0 {
            if body.get(i + 1) != Some(&0xFF) {
                return None;
            }
            out.push(0);
            i += 2;
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    Some(Cow::Owned(out))
}

/// The `rev` CF key of a change.
pub fn rev_key(main: i64, sub: i64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&(main as u64).to_be_bytes());
    out[8..].copy_from_slice(&(sub as u64).to_be_bytes());
    out
}

/// Splits a `rev` CF key into (main, sub).
pub fn split_rev_key(k: &[u8]) -> Option<(i64, i64)> {
    if k.len() != 16 {
        return None;
    }
    let main = u64::from_be_bytes(k[..8].try_into().ok()?) as i64;
    let sub = u64::from_be_bytes(k[8..].try_into().ok()?) as i64;
    Some((main, sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(k: &[u8]) -> Vec<u8> {
        prefix(k)
    }

    #[test]
    fn escaping_preserves_order_and_is_prefix_free() {
        let keys: Vec<&[u8]> = vec![
            b"",
            b"\x00",
            b"\x00\x00",
            b"\x00\x01",
            b"\x00\xff",
            b"\x01",
            b"a",
            b"a\x00",
            b"a\x00\x00",
            b"a\x00b",
            b"a\x01",
            b"a\xff",
            b"aa",
            b"b",
            b"\xff",
            b"\xff\xff",
        ];
        for a in &keys {
            for b in &keys {
                assert_eq!(
                    enc(a).cmp(&enc(b)),
                    a.cmp(b),
                    "order of {a:?} vs {b:?} is not preserved"
                );
                if a != b {
                    assert!(!enc(b).starts_with(&enc(a)), "{a:?} prefixes {b:?}");
                }
            }
        }
    }

    #[test]
    fn versions_sort_newest_first_and_round_trip() {
        let k1 = version_key(b"k\x00y", 5);
        let k2 = version_key(b"k\x00y", 7);
        assert!(k2 < k1, "newer revision must sort first");
        let (plen, rev) = split_version_key(&k1).unwrap();
        assert_eq!(rev, 5);
        assert_eq!(user_key(&k1[..plen]).unwrap().as_ref(), b"k\x00y");
        assert!(after_all_versions(&k1[..plen]) > k1);
        assert!(after_all_versions(&k1[..plen]) < version_key(b"k\x00y\x00", i64::MAX));
        assert!(after_all_versions(&k1[..plen]) < version_key(b"k\x00z", 1));
    }

    #[test]
    fn rev_keys_sort_by_main_then_sub() {
        assert!(rev_key(2, 9) < rev_key(3, 0));
        assert!(rev_key(3, 0) < rev_key(3, 1));
        assert_eq!(split_rev_key(&rev_key(12, 3)), Some((12, 3)));
        assert_eq!(split_rev_key(b"short"), None);
    }

    #[test]
    fn malformed_keys_are_rejected() {
        assert_eq!(split_version_key(b"abc"), None);
        assert_eq!(
            split_version_key(b"ab\x00\x01\x00\x00\x00\x00\x00\x00\x00\x01"),
            None
        );
        assert!(user_key(b"a\x00b\x00\x00").is_none());
        assert!(user_key(b"ab").is_none());
    }
}
