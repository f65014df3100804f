//! Count anchors: remembered facts "at revision R, the range `[p, end)`
//! holds N live keys", so paged lists do not recount the rest of the range
//! on every page.
//!
//! etcd returns the exact number of keys in the whole range with every
//! Range response, even a limited one; kube-apiserver lists by pages of a
//! few hundred keys at one pinned revision, so a naive count walks the
//! remainder of the range for each page. What a revision holds never
//! changes (a compaction only makes old revisions unreadable), so a count
//! learned once stays true. After a limited read counts the whole range,
//! it leaves an anchor at the first key beyond the page; the next page,
//! which starts right there, stops counting when it reaches the anchor.
//!
//! The set is small and bounded: the oldest anchors are forgotten first.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

/// Anchors kept at most.
const MAX_ANCHORS: usize = 1024;

/// The range end and revision an anchor belongs to (`None`: no end).
type Scope = (Option<Vec<u8>>, i64);

#[derive(Debug, Default)]
pub struct CountAnchors {
    /// Per scope: anchor key -> live keys in `[key, end)`.
    by_scope: BTreeMap<Scope, BTreeMap<Vec<u8>, i64>>,
    /// Insertion order, for forgetting the oldest.
    order: VecDeque<(Scope, Vec<u8>)>,
}

impl CountAnchors {
    /// The first anchor at or after `from` in the scope `(end, rev)`.
    pub fn first_from(&self, end: Option<&[u8]>, rev: i64, from: &[u8]) -> Option<(Vec<u8>, i64)> {
        let scope = (end.map(<[u8]>::to_vec), rev);
        self.by_scope
            .get(&scope)?
            .range::<[u8], _>((Bound::Included(from), Bound::Unbounded))
            .next()
            .map(|(k, n)| (k.clone(), *n))
    }

    /// Records that `[key, end)` holds `count` live keys at `rev`.
    pub fn insert(&mut self, end: Option<&[u8]>, rev: i64, key: Vec<u8>, count: i64) {
        let scope = (end.map(<[u8]>::to_vec), rev);
        let anchors = self.by_scope.entry(scope.clone()).or_default();
        if anchors.insert(key.clone(), count).is_none() {
            self.order.push_back((scope, key));
        }
        while self.order.len() > MAX_ANCHORS {
            let Some((scope, key)) = self.order.pop_front() else {
                break;
            };
            if let Some(anchors) = self.by_scope.get_mut(&scope) {
                anchors.remove(&key);
                if anchors.is_empty() {
                    self.by_scope.remove(&scope);
                }
            }
        }
    }

    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_anchor_in_scope_and_forgets_the_oldest() {
        let mut a = CountAnchors::default();
        a.insert(Some(b"z"), 5, b"k10".to_vec(), 90);
        a.insert(Some(b"z"), 5, b"k20".to_vec(), 80);
        a.insert(None, 5, b"k15".to_vec(), 7);
        assert_eq!(
            a.first_from(Some(b"z"), 5, b"k11"),
            Some((b"k20".to_vec(), 80))
        );
        assert_eq!(
            a.first_from(Some(b"z"), 5, b"k10"),
            Some((b"k10".to_vec(), 90))
        );
        assert_eq!(a.first_from(Some(b"z"), 5, b"k21"), None);
        assert_eq!(a.first_from(Some(b"z"), 6, b"k"), None, "another revision");
        assert_eq!(a.first_from(None, 5, b"k"), Some((b"k15".to_vec(), 7)));
        for i in 0..MAX_ANCHORS {
            a.insert(Some(b"y"), 1, format!("{i:05}").into_bytes(), 1);
        }
        assert_eq!(a.held(), MAX_ANCHORS);
        assert_eq!(a.first_from(Some(b"z"), 5, b"k"), None, "oldest forgotten");
        assert_eq!(
            a.first_from(Some(b"y"), 1, b"01023"),
            Some((b"01023".to_vec(), 1))
        );
    }
}
