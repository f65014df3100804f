use std::sync::Arc;

use super::*;
use crate::storage::Db;

fn bs(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

struct T {
    _dir: tempfile::TempDir,
    db: Arc<Db>,
    store: Store,
}

fn open() -> T {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let store = Store::open(db.clone()).unwrap();
    T {
        _dir: dir,
        db,
        store,
    }
}

impl T {
    fn put(&self, k: &str, v: &str) -> i64 {
        let mut b = self.store.begin_batch();
        let mut t = b.txn(&self.db);
        let rev = t.put(&bs(k), &bs(v), 0).unwrap();
        t.end();
        self.store.commit(b).unwrap();
        rev
    }

    fn del(&self, k: &str, end: &str) -> (i64, i64) {
        let mut b = self.store.begin_batch();
        let mut t = b.txn(&self.db);
        let r = t
            .delete_range(KeyRange::new(k.as_bytes(), end.as_bytes()))
            .unwrap();
        t.end();
        self.store.commit(b).unwrap();
        r
    }

    fn range(&self, k: &str, end: &str, opts: RangeOptions) -> Result<RangeResult> {
        self.store
            .read()
            .range(KeyRange::new(k.as_bytes(), end.as_bytes()), &opts)
    }

    fn keys(&self, k: &str, end: &str, rev: i64) -> Vec<(String, String, i64, i64, i64)> {
        self.range(
            k,
            end,
            RangeOptions {
                rev,
                ..Default::default()
            },
        )
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| {
            (
                String::from_utf8(kv.key.to_vec()).unwrap(),
                String::from_utf8(kv.value.to_vec()).unwrap(),
                kv.create_revision,
                kv.mod_revision,
                kv.version,
            )
        })
        .collect()
    }
}

fn kv(k: &str, v: &str, c: i64, m: i64, ver: i64) -> (String, String, i64, i64, i64) {
    (k.into(), v.into(), c, m, ver)
}

#[test]
fn revisions_versions_and_history_follow_etcd() {
    let t = open();
    assert_eq!(t.store.current_rev(), 1, "an empty store is at revision 1");
    assert_eq!(t.put("a", "1"), 2);
    assert_eq!(t.put("a", "2"), 3);
    assert_eq!(t.put("b", "x"), 4);
    assert_eq!(t.keys("a", "", 0), vec![kv("a", "2", 2, 3, 2)]);
    assert_eq!(t.del("a", ""), (1, 5));
    assert_eq!(t.keys("a", "", 0), vec![]);
    assert_eq!(t.put("a", "3"), 6);
    // Re-created: create revision and version start again.
    assert_eq!(t.keys("a", "", 0), vec![kv("a", "3", 6, 6, 1)]);
    // History stays readable.
    assert_eq!(t.keys("a", "", 2), vec![kv("a", "1", 2, 2, 1)]);
    assert_eq!(t.keys("a", "", 4), vec![kv("a", "2", 2, 3, 2)]);
    assert_eq!(t.keys("a", "", 5), vec![]);
    assert_eq!(t.keys("a", "\0", 4).len(), 2);
    // Deleting nothing doesn't create a revision.
    assert_eq!(t.del("zzz", ""), (0, 6));
    assert_eq!(t.store.current_rev(), 6);
}

#[test]
fn ranges_limits_and_counts() {
    let t = open();
    for k in ["a", "b", "c", "d", "e"] {
        t.put(k, k);
    }
    let r = t
        .range(
            "b",
            "e",
            RangeOptions {
                limit: 2,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.kvs.len(), 2);
    assert_eq!(r.count, 3, "count ignores the limit");
    assert_eq!(r.rev, 6);
    let r = t
        .range(
            "a",
            "\0",
            RangeOptions {
                count_only: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(r.kvs.is_empty());
    assert_eq!(r.count, 5);
    let r = t
        .range(
            "c",
            "\0",
            RangeOptions {
                keys_only: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.kvs.len(), 3);
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));
    // An end at or before the start names nothing.
    assert_eq!(t.keys("c", "c", 0), vec![]);
    assert_eq!(t.keys("c", "b", 0), vec![]);
    assert_eq!(t.keys("zz", "", 0), vec![]);
}

#[test]
fn keys_with_zero_and_ff_bytes_sort_bytewise() {
    let t = open();
    for k in ["a\u{0}", "a", "a\u{0}\u{0}", "a\u{1}", "b", "\u{0}"] {
        t.put(k, "v");
    }
    let got: Vec<String> = t.keys("\0", "\0", 0).into_iter().map(|k| k.0).collect();
    assert_eq!(
        got,
        vec!["\u{0}", "a", "a\u{0}", "a\u{0}\u{0}", "a\u{1}", "b"]
    );
    let got: Vec<String> = t.keys("a", "a\u{1}", 0).into_iter().map(|k| k.0).collect();
    assert_eq!(got, vec!["a", "a\u{0}", "a\u{0}\u{0}"]);
}

#[test]
fn reads_at_revisions_outside_history_fail() {
    let t = open();
    t.put("a", "1");
    t.put("a", "2");
    let future = t.range(
        "a",
        "",
        RangeOptions {
            rev: 4,
            ..Default::default()
        },
    );
    assert_eq!(future, Err(Error::FutureRev));
    // Negative and zero revisions read the latest, as in etcd.
    assert_eq!(t.keys("a", "", -5), vec![kv("a", "2", 2, 3, 2)]);
}

#[test]
fn a_batch_reads_its_own_writes_and_aborts_cleanly() {
    let t = open();
    let mut b = t.store.begin_batch();
    {
        let mut w = b.txn(&t.db);
        w.put(&bs("k"), &bs("1"), 0).unwrap();
        w.put(&bs("j"), &bs("1"), 0).unwrap();
        // Same revision for every change of one transaction.
        assert_eq!(w.rev(), 2);
        let r = w
            .range(KeyRange::new(b"a", b"z"), &Default::default())
            .unwrap();
        assert_eq!(r.kvs.len(), 2);
        w.end();
    }
    {
        let mut w = b.txn(&t.db);
        assert_eq!(w.put(&bs("k"), &bs("2"), 0).unwrap(), 3);
        let r = w.range(KeyRange::Key(b"k"), &Default::default()).unwrap();
        assert_eq!(r.kvs[0].version, 2);
        assert_eq!(r.kvs[0].create_revision, 2);
        w.abort();
    }
    {
        let w = b.txn(&t.db);
        let r = w.range(KeyRange::Key(b"k"), &Default::default()).unwrap();
        assert_eq!(r.kvs[0].value.as_ref(), b"1", "aborted write is gone");
        w.end();
    }
    // Nothing is visible to readers before the commit.
    assert_eq!(t.keys("k", "", 0), vec![]);
    assert_eq!(t.store.commit(b).unwrap().compaction, None);
    assert_eq!(t.keys("k", "", 0), vec![kv("k", "1", 2, 2, 1)]);
    assert_eq!(t.store.current_rev(), 2);
}

#[test]
fn compaction_hides_old_revisions_and_removes_only_invisible_versions() {
    let t = open();
    t.put("a", "1"); // 2
    t.put("a", "2"); // 3
    t.put("b", "1"); // 4
    t.del("b", ""); // 5
    t.put("c", "1"); // 6
    t.put("a", "3"); // 7
    let before: Vec<_> = (4..=7).map(|rev| t.keys("a", "\0", rev)).collect();

    let mut b = t.store.begin_batch();
    assert_eq!(b.compact(8), Err(Error::FutureRev));
    b.compact(4).unwrap();
    assert_eq!(b.compact(4), Err(Error::Compacted));
    assert_eq!(t.store.commit(b).unwrap().compaction, Some(4));
    assert_eq!(t.store.compact_rev(), 4);
    let old = t.range(
        "a",
        "",
        RangeOptions {
            rev: 3,
            ..Default::default()
        },
    );
    assert_eq!(old, Err(Error::Compacted));

    compact::compact(&t.db, 4).unwrap();
    let after: Vec<_> = (4..=7).map(|rev| t.keys("a", "\0", rev)).collect();
    assert_eq!(
        before, after,
        "reads at or above the compaction are unchanged"
    );

    // Exactly the invisible versions are gone: a@2 (superseded by a@3 <= 4).
    let versions = |k: &str| {
        let prefix = key::prefix(k.as_bytes());
        let mut it = t.db.kv_iter(
            rocksdb::ReadOptions::default(),
            crate::storage::KvWalk::Range,
        );
        it.seek(&prefix);
        let mut out = vec![];
        while let Some(k) = it.key() {
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(key::split_version_key(k).unwrap().1);
            it.next();
        }
        out
    };
    assert_eq!(versions("a"), vec![7, 3]);
    assert_eq!(
        versions("b"),
        vec![5, 4],
        "tombstone above the compaction stays"
    );

    // A later compaction removes the deleted key and a's older version.
    let mut b = t.store.begin_batch();
    b.compact(7).unwrap();
    t.store.commit(b).unwrap();
    compact::compact(&t.db, 7).unwrap();
    assert_eq!(versions("a"), vec![7]);
    assert_eq!(versions("b"), Vec::<i64>::new());
    assert_eq!(versions("c"), vec![6]);
    assert_eq!(t.keys("a", "\0", 7).len(), 2);
}

#[test]
fn revisions_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path()).unwrap();
        let store = Store::open(db.clone()).unwrap();
        let mut b = store.begin_batch();
        let mut w = b.txn(&db);
        w.put(&bs("a"), &bs("1"), 0).unwrap();
        w.end();
        b.set_applied(9, 1);
        store.commit(b).unwrap();
        let mut b = store.begin_batch();
        b.compact(2).unwrap();
        store.commit(b).unwrap();
    }
    let db = Db::open(dir.path()).unwrap();
    let store = Store::open(db.clone()).unwrap();
    assert_eq!(store.current_rev(), 2);
    assert_eq!(store.compact_rev(), 2);
    assert_eq!(
        db.get_u64(crate::storage::Cf::Meta, meta_key::APPLIED_INDEX)
            .unwrap(),
        Some(9)
    );
}

/// Paged reads leave count anchors; every page's count and keys must match
/// an unlimited read of the same range at the same revision, whatever the
/// page size, start key, revision, compaction or later writes.
#[test]
fn paged_counts_stay_exact_with_count_anchors() {
    let t = open();
    // A deterministic mix of puts and deletes over 60 keys.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut revs = vec![];
    for _ in 0..300 {
        let k = format!("k{:02}", next(60));
        if next(5) == 0 {
            t.del(&k, "");
        } else {
            t.put(&k, "v");
        }
        revs.push(t.store.current_rev());
    }
    let full = |start: &str, end: &str, rev: i64| {
        t.range(
            start,
            end,
            RangeOptions {
                rev,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let mut check = |compacted: i64| {
        for round in 0..40 {
            let rev = revs[revs.len() - 1 - next(revs.len() as u64 - 1) as usize];
            if rev < compacted {
                continue;
            }
            let end = ["", "k40", "\0"][(round % 3) as usize];
            let mut start = format!("k{:02}", next(30));
            let want = full(&start, end, rev);
            // Walk the range by pages like a paginating client, changing the
            // page size on the way; count at each step with a count-only read.
            loop {
                let limit = 1 + next(7) as usize;
                let page = t
                    .range(
                        &start,
                        end,
                        RangeOptions {
                            limit,
                            rev,
                            ..Default::default()
                        },
                    )
                    .unwrap();
                let rest = full(&start, end, rev);
                assert_eq!(page.count, rest.count, "count from {start} at {rev}");
                assert_eq!(page.kvs[..], rest.kvs[..limit.min(rest.kvs.len())]);
                let counted = t
                    .range(
                        &start,
                        end,
                        RangeOptions {
                            count_only: true,
                            rev,
                            ..Default::default()
                        },
                    )
                    .unwrap();
                assert_eq!(counted.count, rest.count);
                if page.kvs.len() as i64 >= page.count {
                    break;
                }
                let last = page.kvs[page.kvs.len() - 1].key.clone();
                start = String::from_utf8(last.to_vec()).unwrap() + "\0";
            }
            assert!(want.count <= 60);
        }
    };
    check(0);
    // Later writes and a compaction change nothing at the revisions read.
    t.put("k05", "later");
    t.del("k10", "k20");
    let compact_at = revs[revs.len() / 2];
    let mut b = t.store.begin_batch();
    b.compact(compact_at).unwrap();
    t.store.commit(b).unwrap();
    compact::compact(&t.db, compact_at).unwrap();
    check(compact_at);
}

#[test]
fn hash_kv_depends_on_history_not_on_physical_compaction() {
    let t = open();
    t.put("a", "1"); // 2
    t.put("a", "2"); // 3
    t.put("b", "1"); // 4
    t.del("b", ""); // 5
    t.put("c", "1"); // 6
    let at5 = t.store.hash_kv(5).unwrap();
    let now = t.store.hash_kv(0).unwrap();
    assert_eq!(
        (now.hash_rev, now.current_rev, now.compact_rev),
        (6, 6, -1),
        "never compacted: -1, as etcd"
    );
    assert_ne!(at5.hash, now.hash, "revision 6 adds c");
    assert_eq!(t.store.hash_kv(5).unwrap(), at5, "deterministic");
    assert_eq!(t.store.hash_kv(7), Err(Error::FutureRev));

    let mut b = t.store.begin_batch();
    b.compact(5).unwrap();
    t.store.commit(b).unwrap();
    let logical = t.store.hash_kv(6).unwrap();
    assert_eq!(logical.compact_rev, 5);
    compact::compact(&t.db, 5).unwrap();
    let physical = t.store.hash_kv(6).unwrap();
    assert_eq!(logical, physical, "physical compaction changes nothing");
    assert_eq!(t.store.hash_kv(4), Err(Error::Compacted));
    t.put("a", "3");
    assert_ne!(t.store.hash_kv(0).unwrap().hash, physical.hash);
    assert_eq!(t.store.hash_kv(6).unwrap().hash, physical.hash);
}
