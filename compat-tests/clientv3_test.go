package compat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/apimachinery/pkg/util/version"
)

// ---------------------------------------------------------------------------
// KV
// ---------------------------------------------------------------------------

func TestKVPutGet(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	cli := newClient(t)
	key := uniquePrefix(t) + "k"

	p1, err := cli.Put(ctx, key, "v1")
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if p1.Header.Revision <= 0 || p1.Header.ClusterId == 0 || p1.Header.MemberId == 0 || p1.Header.RaftTerm == 0 {
		t.Errorf("Put header not filled: %+v", p1.Header)
	}
	if p1.PrevKv != nil {
		t.Errorf("Put without WithPrevKV returned prev_kv %v", p1.PrevKv)
	}

	g, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if len(g.Kvs) != 1 || g.Count != 1 || g.More {
		t.Fatalf("Get %q = %d kvs, count %d, more %v; want 1 kv", key, len(g.Kvs), g.Count, g.More)
	}
	kv := g.Kvs[0]
	if string(kv.Key) != key || string(kv.Value) != "v1" || kv.Version != 1 ||
		kv.CreateRevision != p1.Header.Revision || kv.ModRevision != p1.Header.Revision || kv.Lease != 0 {
		t.Errorf("Get = %+v; want key %q value v1 version 1 create=mod=%d", kv, key, p1.Header.Revision)
	}
	if g.Header.Revision < p1.Header.Revision {
		t.Errorf("Get header revision %d < put revision %d", g.Header.Revision, p1.Header.Revision)
	}

	p2, err := cli.Put(ctx, key, "v2", clientv3.WithPrevKV())
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	if p2.Header.Revision <= p1.Header.Revision {
		t.Errorf("second Put revision %d not after first %d", p2.Header.Revision, p1.Header.Revision)
	}
	if p2.PrevKv == nil || string(p2.PrevKv.Value) != "v1" || p2.PrevKv.ModRevision != p1.Header.Revision {
		t.Errorf("Put WithPrevKV prev_kv = %+v; want value v1 mod_revision %d", p2.PrevKv, p1.Header.Revision)
	}
	g, err = cli.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	kv = g.Kvs[0]
	if string(kv.Value) != "v2" || kv.Version != 2 || kv.CreateRevision != p1.Header.Revision || kv.ModRevision != p2.Header.Revision {
		t.Errorf("after update Get = %+v; want value v2 version 2 create %d mod %d", kv, p1.Header.Revision, p2.Header.Revision)
	}

	// IgnoreValue keeps the value and bumps the version.
	if _, err := cli.Put(ctx, key, "", clientv3.WithIgnoreValue()); err != nil {
		t.Fatalf("Put WithIgnoreValue: %v", err)
	}
	g, err = cli.Get(ctx, key)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if string(g.Kvs[0].Value) != "v2" || g.Kvs[0].Version != 3 {
		t.Errorf("after ignore_value Put Get = %+v; want value v2 version 3", g.Kvs[0])
	}

	// IgnoreValue on a missing key fails with the etcd error.
	_, err = cli.Put(ctx, key+"-missing", "", clientv3.WithIgnoreValue())
	if !errors.Is(err, rpctypes.ErrKeyNotFound) {
		t.Errorf("Put WithIgnoreValue on missing key: err = %v; want %v", err, rpctypes.ErrKeyNotFound)
	}

	// A missing key reads as no kvs, not an error.
	g, err = cli.Get(ctx, key+"-missing")
	if err != nil || len(g.Kvs) != 0 || g.Count != 0 {
		t.Errorf("Get missing key = %v, %v; want empty", g, err)
	}

	// Empty key is rejected.
	if _, err := cli.Put(ctx, "", "x"); !errors.Is(err, rpctypes.ErrEmptyKey) {
		t.Errorf("Put empty key: err = %v; want %v", err, rpctypes.ErrEmptyKey)
	}
}

func TestKVDelete(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	cli := newClient(t)
	pfx := uniquePrefix(t)

	for _, k := range []string{"a", "b", "c", "d"} {
		if _, err := cli.Put(ctx, pfx+k, "val-"+k); err != nil {
			t.Fatalf("Put: %v", err)
		}
	}
	// single key with prev_kv
	d, err := cli.Delete(ctx, pfx+"a", clientv3.WithPrevKV())
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if d.Deleted != 1 || len(d.PrevKvs) != 1 || string(d.PrevKvs[0].Value) != "val-a" {
		t.Errorf("Delete a = deleted %d prev %v; want 1 with value val-a", d.Deleted, d.PrevKvs)
	}
	// missing key
	d, err = cli.Delete(ctx, pfx+"a")
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if d.Deleted != 0 {
		t.Errorf("Delete of missing key deleted %d", d.Deleted)
	}
	// a range [b, d)
	d, err = cli.Delete(ctx, pfx+"b", clientv3.WithRange(pfx+"d"))
	if err != nil {
		t.Fatalf("Delete range: %v", err)
	}
	if d.Deleted != 2 {
		t.Errorf("Delete [b,d) deleted %d; want 2", d.Deleted)
	}
	// the rest by prefix
	d, err = cli.Delete(ctx, pfx, clientv3.WithPrefix(), clientv3.WithPrevKV())
	if err != nil {
		t.Fatalf("Delete prefix: %v", err)
	}
	if d.Deleted != 1 || len(d.PrevKvs) != 1 || string(d.PrevKvs[0].Key) != pfx+"d" {
		t.Errorf("Delete prefix = deleted %d prev %v; want only %sd", d.Deleted, d.PrevKvs, pfx)
	}
	g, err := cli.Get(ctx, pfx, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if len(g.Kvs) != 0 || g.Count != 0 {
		t.Errorf("after deletes Get prefix = %d kvs count %d; want none", len(g.Kvs), g.Count)
	}

	// Re-creating a deleted key starts a new generation: version 1, new create revision.
	p, err := cli.Put(ctx, pfx+"a", "again")
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	g, err = cli.Get(ctx, pfx+"a")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if g.Kvs[0].Version != 1 || g.Kvs[0].CreateRevision != p.Header.Revision {
		t.Errorf("recreated key = %+v; want version 1 create_revision %d", g.Kvs[0], p.Header.Revision)
	}
}

func TestKVRangePrefixLimitSort(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	cli := newClient(t)
	pfx := uniquePrefix(t)

	// Write keys k00..k09 in reverse order so key order and revision order differ.
	const n = 10
	revs := map[string]int64{}
	for i := n - 1; i >= 0; i-- {
		k := fmt.Sprintf("%sk%02d", pfx, i)
		r, err := cli.Put(ctx, k, fmt.Sprintf("value-%d", i))
		if err != nil {
			t.Fatalf("Put: %v", err)
		}
		revs[k] = r.Header.Revision
	}
	// A key just outside the prefix must never show up.
	outside := strings.TrimSuffix(pfx, "/") + "0"
	if _, err := cli.Put(ctx, outside, "x"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	t.Cleanup(func() { _, _ = cli.Delete(context.Background(), outside) })

	keysOf := func(r *clientv3.GetResponse) []string {
		var ks []string
		for _, kv := range r.Kvs {
			ks = append(ks, strings.TrimPrefix(string(kv.Key), pfx))
		}
		return ks
	}
	want := func(idx ...int) []string {
		var ks []string
		for _, i := range idx {
			ks = append(ks, fmt.Sprintf("k%02d", i))
		}
		return ks
	}
	eq := func(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

	all, err := cli.Get(ctx, pfx, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("Get prefix: %v", err)
	}
	if got := keysOf(all); !eq(got, want(0, 1, 2, 3, 4, 5, 6, 7, 8, 9)) || all.Count != n || all.More {
		t.Errorf("Get prefix = %v count %d more %v; want k00..k09 ascending, count 10", got, all.Count, all.More)
	}

	lim, err := cli.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithLimit(3))
	if err != nil {
		t.Fatalf("Get limit: %v", err)
	}
	if got := keysOf(lim); !eq(got, want(0, 1, 2)) || lim.Count != n || !lim.More {
		t.Errorf("Get limit 3 = %v count %d more %v; want k00..k02, count 10, more", got, lim.Count, lim.More)
	}

	// Pagination the way kube-apiserver does it: next page from lastKey+"\x00" at a pinned revision.
	rev := all.Header.Revision
	var paged []string
	start := pfx
	for page := 0; page < 10; page++ {
		r, err := cli.Get(ctx, start, clientv3.WithRange(clientv3.GetPrefixRangeEnd(pfx)), clientv3.WithLimit(4), clientv3.WithRev(rev))
		if err != nil {
			t.Fatalf("Get page: %v", err)
		}
		paged = append(paged, keysOf(r)...)
		if !r.More {
			break
		}
		start = string(r.Kvs[len(r.Kvs)-1].Key) + "\x00"
	}
	if !eq(paged, want(0, 1, 2, 3, 4, 5, 6, 7, 8, 9)) {
		t.Errorf("paged = %v; want k00..k09", paged)
	}

	desc, err := cli.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(4))
	if err != nil {
		t.Fatalf("Get sort desc: %v", err)
	}
	if got := keysOf(desc); !eq(got, want(9, 8, 7, 6)) || desc.Count != n || !desc.More {
		t.Errorf("Get sort key desc limit 4 = %v count %d more %v; want k09..k06", got, desc.Count, desc.More)
	}

	byMod, err := cli.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortAscend))
	if err != nil {
		t.Fatalf("Get sort mod: %v", err)
	}
	if got := keysOf(byMod); !eq(got, want(9, 8, 7, 6, 5, 4, 3, 2, 1, 0)) {
		t.Errorf("Get sort mod_revision asc = %v; want write order k09..k00", got)
	}

	byVal, err := cli.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortDescend))
	if err != nil {
		t.Fatalf("Get sort value: %v", err)
	}
	if got := keysOf(byVal); !eq(got, want(9, 8, 7, 6, 5, 4, 3, 2, 1, 0)) {
		t.Errorf("Get sort value desc = %v; want k09..k00", got)
	}

	rng, err := cli.Get(ctx, pfx+"k03", clientv3.WithRange(pfx+"k06"))
	if err != nil {
		t.Fatalf("Get range: %v", err)
	}
	if got := keysOf(rng); !eq(got, want(3, 4, 5)) || rng.Count != 3 {
		t.Errorf("Get [k03,k06) = %v count %d; want k03..k05", got, rng.Count)
	}

	ko, err := cli.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatalf("Get keys only: %v", err)
	}
	for _, kv := range ko.Kvs {
		if len(kv.Value) != 0 {
			t.Errorf("keys_only returned value %q for %q", kv.Value, kv.Key)
		}
	}
	if len(ko.Kvs) != n {
		t.Errorf("keys_only returned %d kvs; want %d", len(ko.Kvs), n)
	}

	co, err := cli.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatalf("Get count only: %v", err)
	}
	if len(co.Kvs) != 0 || co.Count != n {
		t.Errorf("count_only = %d kvs count %d; want 0 kvs count %d", len(co.Kvs), co.Count, n)
	}

	// mod_revision filter: only the 3 keys written last (k02, k01, k00).
	minRev := revs[pfx+"k02"]
	mr, err := cli.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithMinModRev(minRev))
	if err != nil {
		t.Fatalf("Get min mod rev: %v", err)
	}
	if got := keysOf(mr); !eq(got, want(0, 1, 2)) {
		t.Errorf("Get min_mod_revision %d = %v; want k00..k02", minRev, got)
	}

	ser, err := cli.Get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		t.Fatalf("Get serializable: %v", err)
	}
	if len(ser.Kvs) != n {
		t.Errorf("serializable Get returned %d kvs; want %d", len(ser.Kvs), n)
	}
}

func TestKVRevisionReads(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	cli := newClient(t)
	key := uniquePrefix(t) + "k"

	r1, err := cli.Put(ctx, key, "v1")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := cli.Put(ctx, key, "v2")
	if err != nil {
		t.Fatal(err)
	}
	r3, err := cli.Delete(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rev     int64
		want    string
		version int64
	}{
		{r1.Header.Revision, "v1", 1},
		{r2.Header.Revision, "v2", 2},
		{r3.Header.Revision, "", 0},
	} {
		g, err := cli.Get(ctx, key, clientv3.WithRev(tc.rev))
		if err != nil {
			t.Fatalf("Get rev %d: %v", tc.rev, err)
		}
		if tc.want == "" {
			if len(g.Kvs) != 0 {
				t.Errorf("Get rev %d = %v; want deleted", tc.rev, g.Kvs)
			}
			continue
		}
		if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != tc.want || g.Kvs[0].Version != tc.version {
			t.Errorf("Get rev %d = %v; want %s version %d", tc.rev, g.Kvs, tc.want, tc.version)
		}
		if g.Header.Revision < r3.Header.Revision {
			t.Errorf("historic Get header revision %d; want current (>= %d)", g.Header.Revision, r3.Header.Revision)
		}
	}
	// A revision in the future is rejected.
	_, err = cli.Get(ctx, key, clientv3.WithRev(r3.Header.Revision+1_000_000))
	if !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Errorf("Get future revision: err = %v; want %v", err, rpctypes.ErrFutureRev)
	}
}

// ---------------------------------------------------------------------------
// Txn
// ---------------------------------------------------------------------------

func TestTxn(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	cli := newClient(t)
	pfx := uniquePrefix(t)
	key := pfx + "k"

	// Create-if-absent, the way kube-apiserver creates objects.
	create := func() *clientv3.TxnResponse {
		r, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, "v1")).Commit()
		if err != nil {
			t.Fatalf("create Txn: %v", err)
		}
		return r
	}
	c1 := create()
	if !c1.Succeeded || len(c1.Responses) != 1 || c1.Responses[0].GetResponsePut() == nil {
		t.Fatalf("first create: succeeded %v responses %v; want success with one put", c1.Succeeded, c1.Responses)
	}
	createdRev := c1.Header.Revision
	if c2 := create(); c2.Succeeded || len(c2.Responses) != 0 {
		t.Errorf("second create: succeeded %v responses %v; want failure and no else ops", c2.Succeeded, c2.Responses)
	} else if c2.Header.Revision != createdRev {
		t.Errorf("failed Txn moved the revision: %d -> %d", createdRev, c2.Header.Revision)
	}

	// Update guarded by mod_revision, with a Range in the else branch.
	update := func(expect int64, val string) *clientv3.TxnResponse {
		r, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", expect)).
			Then(clientv3.OpPut(key, val, clientv3.WithPrevKV())).
			Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			t.Fatalf("update Txn: %v", err)
		}
		return r
	}
	u1 := update(createdRev, "v2")
	if !u1.Succeeded {
		t.Fatalf("update at current mod_revision failed")
	}
	if pk := u1.Responses[0].GetResponsePut().PrevKv; pk == nil || string(pk.Value) != "v1" {
		t.Errorf("update prev_kv = %v; want v1", pk)
	}
	u2 := update(createdRev, "v3")
	if u2.Succeeded {
		t.Fatalf("update at stale mod_revision succeeded")
	}
	rr := u2.Responses[0].GetResponseRange()
	if rr == nil || len(rr.Kvs) != 1 || string(rr.Kvs[0].Value) != "v2" || rr.Kvs[0].ModRevision != u1.Header.Revision {
		t.Errorf("else Range = %v; want current kv v2 at mod_revision %d", rr, u1.Header.Revision)
	}

	// Value, version and create_revision compares; several ops in one branch.
	if _, err := cli.Put(ctx, pfx+"z", "doomed"); err != nil {
		t.Fatal(err)
	}
	r, err := cli.Txn(ctx).If(
		clientv3.Compare(clientv3.Value(key), "=", "v2"),
		clientv3.Compare(clientv3.Version(key), "=", 2),
		clientv3.Compare(clientv3.CreateRevision(key), "=", createdRev),
		clientv3.Compare(clientv3.Value(key), ">", "v1"),
	).Then(
		clientv3.OpPut(pfx+"x", "1"),
		clientv3.OpPut(pfx+"y", "2"),
		clientv3.OpGet(pfx, clientv3.WithPrefix(), clientv3.WithCountOnly()),
		clientv3.OpDelete(pfx+"z"),
	).Commit()
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	if !r.Succeeded || len(r.Responses) != 4 {
		t.Fatalf("compound Txn succeeded %v with %d responses; want success with 4", r.Succeeded, len(r.Responses))
	}
	if c := r.Responses[2].GetResponseRange().Count; c != 4 {
		t.Errorf("Range after two puts inside Txn saw count %d; want 4 (k, x, y, z)", c)
	}
	if d := r.Responses[3].GetResponseDeleteRange().Deleted; d != 1 {
		t.Errorf("Delete inside Txn deleted %d; want 1", d)
	}
	// All writes of one Txn share one revision.
	g, err := cli.Get(ctx, pfx+"y")
	if err != nil {
		t.Fatal(err)
	}
	if g.Kvs[0].ModRevision != r.Header.Revision {
		t.Errorf("put inside Txn has mod_revision %d; want the Txn revision %d", g.Kvs[0].ModRevision, r.Header.Revision)
	}

	// A failing value compare runs the else branch.
	r, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(key), "=", "nope")).
		Then(clientv3.OpPut(key, "never")).
		Else(clientv3.OpPut(pfx+"else", "ran")).Commit()
	if err != nil {
		t.Fatal(err)
	}
	if r.Succeeded {
		t.Errorf("Txn with false compare succeeded")
	}
	g, err = cli.Get(ctx, pfx+"else")
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "ran" {
		t.Errorf("else branch put not applied: %v", g.Kvs)
	}
	g, err = cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if string(g.Kvs[0].Value) != "v2" {
		t.Errorf("then branch of failed Txn applied: %s", g.Kvs[0].Value)
	}

	// Duplicate keys among a Txn's puts are rejected.
	_, err = cli.Txn(ctx).Then(clientv3.OpPut(pfx+"dup", "1"), clientv3.OpPut(pfx+"dup", "2")).Commit()
	if !errors.Is(err, rpctypes.ErrDuplicateKey) {
		t.Errorf("Txn with duplicate puts: err = %v; want %v", err, rpctypes.ErrDuplicateKey)
	}
}

// ---------------------------------------------------------------------------
// Compact
// ---------------------------------------------------------------------------

func TestCompact(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	cli := newClient(t)
	key := uniquePrefix(t) + "k"

	var revs []int64
	for i := 1; i <= 3; i++ {
		r, err := cli.Put(ctx, key, fmt.Sprintf("v%d", i))
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, r.Header.Revision)
	}
	if _, err := cli.Compact(ctx, revs[1], clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("Compact(%d): %v", revs[1], err)
	}
	_, err := cli.Get(ctx, key, clientv3.WithRev(revs[0]))
	if !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("Get at compacted revision %d: err = %v; want %v", revs[0], err, rpctypes.ErrCompacted)
	}
	g, err := cli.Get(ctx, key, clientv3.WithRev(revs[1]))
	if err != nil {
		t.Fatalf("Get at compaction revision %d: %v", revs[1], err)
	}
	if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "v2" {
		t.Errorf("Get at compaction revision = %v; want v2", g.Kvs)
	}
	g, err = cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "v3" || g.Kvs[0].Version != 3 || g.Kvs[0].CreateRevision != revs[0] {
		t.Errorf("latest after compaction = %v; want v3 version 3 create_revision %d", g.Kvs, revs[0])
	}
	// Compacting again at (or below) the compacted revision fails.
	if _, err := cli.Compact(ctx, revs[1]); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("Compact again at %d: err = %v; want %v", revs[1], err, rpctypes.ErrCompacted)
	}
	// Compacting beyond the current revision fails.
	if _, err := cli.Compact(ctx, g.Header.Revision+1_000_000); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Errorf("Compact in the future: err = %v; want %v", err, rpctypes.ErrFutureRev)
	}
}

// ---------------------------------------------------------------------------
// Watch
// ---------------------------------------------------------------------------

type wantEvent struct {
	typ     mvccpb.Event_EventType
	key     string
	value   string
	prev    string // "" = no prev_kv expected
	isNew   bool
	version int64
}

func checkEvents(t *testing.T, got []*clientv3.Event, want []wantEvent) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d: %v", len(got), len(want), got)
	}
	var lastRev int64
	for i, ev := range got {
		w := want[i]
		if ev.Type != w.typ || string(ev.Kv.Key) != w.key {
			t.Errorf("event %d = %s %q; want %s %q", i, ev.Type, ev.Kv.Key, w.typ, w.key)
			continue
		}
		if w.typ == clientv3.EventTypePut {
			if string(ev.Kv.Value) != w.value || ev.Kv.Version != w.version || ev.IsCreate() != w.isNew {
				t.Errorf("event %d kv = %+v (create %v); want value %q version %d create %v", i, ev.Kv, ev.IsCreate(), w.value, w.version, w.isNew)
			}
		}
		if ev.Kv.ModRevision <= lastRev {
			t.Errorf("event %d mod_revision %d not after previous %d", i, ev.Kv.ModRevision, lastRev)
		}
		lastRev = ev.Kv.ModRevision
		switch {
		case w.prev == "" && ev.PrevKv != nil:
			t.Errorf("event %d has prev_kv %v; want none", i, ev.PrevKv)
		case w.prev != "" && (ev.PrevKv == nil || string(ev.PrevKv.Value) != w.prev):
			t.Errorf("event %d prev_kv = %v; want value %q", i, ev.PrevKv, w.prev)
		}
	}
}

// collectEvents reads from wch until n events arrived.
func collectEvents(t *testing.T, wch clientv3.WatchChan, n int, timeout time.Duration) []*clientv3.Event {
	t.Helper()
	var evs []*clientv3.Event
	deadline := time.After(timeout)
	for len(evs) < n {
		select {
		case wr, ok := <-wch:
			if !ok {
				t.Fatalf("watch channel closed after %d of %d events", len(evs), n)
			}
			if err := wr.Err(); err != nil {
				t.Fatalf("watch error after %d events: %v", len(evs), err)
			}
			evs = append(evs, wr.Events...)
		case <-deadline:
			t.Fatalf("timed out after %d of %d events: %v", len(evs), n, evs)
		}
	}
	return evs
}

func waitCreated(t *testing.T, wch clientv3.WatchChan) {
	t.Helper()
	select {
	case wr, ok := <-wch:
		if !ok || !wr.Created {
			t.Fatalf("first watch response = %+v (open %v); want created notification", wr, ok)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no created notification")
	}
}

func TestWatchPrefixPrevKV(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	cli := newClient(t)
	pfx := uniquePrefix(t)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := cli.Watch(wctx, pfx, clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithCreatedNotify())
	waitCreated(t, wch)

	if _, err := cli.Put(ctx, pfx+"a", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, pfx+"a", "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, pfx+"c", "x"); err != nil {
		t.Fatal(err)
	}
	// just past the prefix: must not be delivered
	if _, err := cli.Put(ctx, strings.TrimSuffix(pfx, "/")+"0", "outside"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = cli.Delete(context.Background(), strings.TrimSuffix(pfx, "/")+"0") })
	if _, err := cli.Delete(ctx, pfx+"a"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, pfx+"b", "1"); err != nil {
		t.Fatal(err)
	}
	evs := collectEvents(t, wch, 5, 10*time.Second)
	checkEvents(t, evs, []wantEvent{
		{typ: clientv3.EventTypePut, key: pfx + "a", value: "1", isNew: true, version: 1},
		{typ: clientv3.EventTypePut, key: pfx + "a", value: "2", prev: "1", version: 2},
		{typ: clientv3.EventTypePut, key: pfx + "c", value: "x", isNew: true, version: 1},
		{typ: clientv3.EventTypeDelete, key: pfx + "a", prev: "2"},
		{typ: clientv3.EventTypePut, key: pfx + "b", value: "1", isNew: true, version: 1},
	})
	// A delete event carries the deletion revision and an empty value.
	if del := evs[3]; del.Kv.ModRevision <= evs[2].Kv.ModRevision || len(del.Kv.Value) != 0 {
		t.Errorf("delete event kv = %+v", del.Kv)
	}
}

func TestWatchFromPastRevision(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	cli := newClient(t)
	pfx := uniquePrefix(t)

	p1, err := cli.Put(ctx, pfx+"a", "1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, pfx+"b", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, pfx+"a", "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, pfx+"b"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Whole history from the first write.
	wch := cli.Watch(wctx, pfx, clientv3.WithPrefix(), clientv3.WithRev(p1.Header.Revision), clientv3.WithPrevKV())
	evs := collectEvents(t, wch, 4, 10*time.Second)
	checkEvents(t, evs, []wantEvent{
		{typ: clientv3.EventTypePut, key: pfx + "a", value: "1", isNew: true, version: 1},
		{typ: clientv3.EventTypePut, key: pfx + "b", value: "1", isNew: true, version: 1},
		{typ: clientv3.EventTypePut, key: pfx + "a", value: "2", prev: "1", version: 2},
		{typ: clientv3.EventTypeDelete, key: pfx + "b", prev: "1"},
	})
	// Live events follow the replayed ones on the same watch.
	if _, err := cli.Put(ctx, pfx+"c", "1"); err != nil {
		t.Fatal(err)
	}
	live := collectEvents(t, wch, 1, 10*time.Second)
	if string(live[0].Kv.Key) != pfx+"c" {
		t.Errorf("live event after replay = %v; want put of %sc", live[0], pfx)
	}

	// A single-key watch from a past revision, filtered to deletes only.
	wch2 := cli.Watch(wctx, pfx+"b", clientv3.WithRev(p1.Header.Revision), clientv3.WithFilterPut())
	evs = collectEvents(t, wch2, 1, 10*time.Second)
	if evs[0].Type != clientv3.EventTypeDelete || string(evs[0].Kv.Key) != pfx+"b" {
		t.Errorf("filtered watch event = %v; want delete of %sb", evs[0], pfx)
	}
}

func TestWatchRequestProgress(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	cli := newClient(t)
	pfx := uniquePrefix(t)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := cli.Watch(wctx, pfx, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	waitCreated(t, wch)

	// Writes outside the watched range advance the revision without events.
	other := newClient(t)
	var last int64
	for i := 0; i < 3; i++ {
		r, err := other.Put(ctx, uniquePrefix(t)+"elsewhere", "x")
		if err != nil {
			t.Fatal(err)
		}
		last = r.Header.Revision
	}
	// RequestProgress must use the same context as the watch to reach its stream.
	if err := cli.RequestProgress(wctx); err != nil {
		t.Fatalf("RequestProgress: %v", err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case wr, ok := <-wch:
			if !ok {
				t.Fatal("watch channel closed")
			}
			if len(wr.Events) > 0 {
				t.Fatalf("unexpected events on idle watch: %v", wr.Events)
			}
			if !wr.IsProgressNotify() {
				continue
			}
			if wr.Header.Revision < last {
				t.Errorf("progress notification at revision %d; want >= last write %d", wr.Header.Revision, last)
			}
			return
		case <-deadline:
			t.Fatal("no progress notification after RequestProgress")
		}
	}
}

func TestWatchCompacted(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	cli := newClient(t)
	key := uniquePrefix(t) + "k"

	var revs []int64
	for i := 1; i <= 3; i++ {
		r, err := cli.Put(ctx, key, fmt.Sprintf("v%d", i))
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, r.Header.Revision)
	}
	if _, err := cli.Compact(ctx, revs[2]); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := cli.Watch(wctx, key, clientv3.WithRev(revs[0]))
	select {
	case wr, ok := <-wch:
		if !ok {
			t.Fatal("watch channel closed without a response")
		}
		if wr.CompactRevision != revs[2] {
			t.Errorf("CompactRevision = %d; want %d", wr.CompactRevision, revs[2])
		}
		if !errors.Is(wr.Err(), rpctypes.ErrCompacted) {
			t.Errorf("Err() = %v; want %v", wr.Err(), rpctypes.ErrCompacted)
		}
		if len(wr.Events) != 0 {
			t.Errorf("compacted watch delivered events: %v", wr.Events)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no response for a watch on a compacted revision")
	}
	select {
	case wr, ok := <-wch:
		if ok {
			t.Errorf("watch channel still open after compaction error: %+v", wr)
		}
	case <-time.After(10 * time.Second):
		t.Error("watch channel not closed after compaction error")
	}

	// Watching from exactly the compaction revision works.
	wch = cli.Watch(wctx, key, clientv3.WithRev(revs[2]))
	evs := collectEvents(t, wch, 1, 10*time.Second)
	if string(evs[0].Kv.Value) != "v3" || evs[0].Kv.ModRevision != revs[2] {
		t.Errorf("watch from compaction revision = %v; want v3 at %d", evs[0], revs[2])
	}
}

// ---------------------------------------------------------------------------
// Lease
// ---------------------------------------------------------------------------

func TestLease(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	cli := newClient(t)
	pfx := uniquePrefix(t)

	g, err := cli.Grant(ctx, 30)
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	if g.ID == 0 || g.TTL != 30 {
		t.Fatalf("Grant = id %d ttl %d; want nonzero id, ttl 30", g.ID, g.TTL)
	}
	for _, k := range []string{"a", "b"} {
		if _, err := cli.Put(ctx, pfx+k, "v", clientv3.WithLease(g.ID)); err != nil {
			t.Fatalf("Put with lease: %v", err)
		}
	}
	if _, err := cli.Put(ctx, pfx+"free", "v"); err != nil {
		t.Fatal(err)
	}
	got, err := cli.Get(ctx, pfx+"a")
	if err != nil {
		t.Fatal(err)
	}
	if got.Kvs[0].Lease != int64(g.ID) {
		t.Errorf("kv lease = %d; want %d", got.Kvs[0].Lease, g.ID)
	}

	ttl, err := cli.TimeToLive(ctx, g.ID, clientv3.WithAttachedKeys())
	if err != nil {
		t.Fatalf("TimeToLive: %v", err)
	}
	if ttl.ID != g.ID || ttl.GrantedTTL != 30 || ttl.TTL <= 0 || ttl.TTL > 30 || len(ttl.Keys) != 2 {
		t.Errorf("TimeToLive = id %d granted %d ttl %d keys %q; want granted 30, 0<ttl<=30, 2 keys", ttl.ID, ttl.GrantedTTL, ttl.TTL, ttl.Keys)
	}

	ka, err := cli.KeepAliveOnce(ctx, g.ID)
	if err != nil {
		t.Fatalf("KeepAliveOnce: %v", err)
	}
	if ka.ID != g.ID || ka.TTL != 30 {
		t.Errorf("KeepAliveOnce = id %d ttl %d; want ttl 30", ka.ID, ka.TTL)
	}

	kctx, kcancel := context.WithCancel(ctx)
	kch, err := cli.KeepAlive(kctx, g.ID)
	if err != nil {
		t.Fatalf("KeepAlive: %v", err)
	}
	select {
	case r, ok := <-kch:
		if !ok || r.ID != g.ID || r.TTL != 30 {
			t.Errorf("KeepAlive response = %+v (open %v); want ttl 30", r, ok)
		}
	case <-time.After(10 * time.Second):
		t.Error("no KeepAlive response")
	}
	kcancel()

	leases, err := cli.Leases(ctx)
	if err != nil {
		t.Fatalf("Leases: %v", err)
	}
	found := false
	for _, l := range leases.Leases {
		found = found || l.ID == g.ID
	}
	if !found {
		t.Errorf("Leases() does not list %d", g.ID)
	}

	if _, err := cli.Revoke(ctx, g.ID); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	rest, err := cli.Get(ctx, pfx, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(rest.Kvs) != 1 || string(rest.Kvs[0].Key) != pfx+"free" {
		t.Errorf("after Revoke keys = %v; want only %sfree", rest.Kvs, pfx)
	}
	ttl, err = cli.TimeToLive(ctx, g.ID)
	if err != nil {
		t.Fatalf("TimeToLive after revoke: %v", err)
	}
	if ttl.TTL != -1 {
		t.Errorf("TimeToLive after revoke ttl = %d; want -1", ttl.TTL)
	}
	if _, err := cli.KeepAliveOnce(ctx, g.ID); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Errorf("KeepAliveOnce after revoke: err = %v; want %v", err, rpctypes.ErrLeaseNotFound)
	}
	if _, err := cli.Revoke(ctx, g.ID); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Errorf("Revoke twice: err = %v; want %v", err, rpctypes.ErrLeaseNotFound)
	}
	if _, err := cli.Put(ctx, pfx+"c", "v", clientv3.WithLease(g.ID)); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Errorf("Put with revoked lease: err = %v; want %v", err, rpctypes.ErrLeaseNotFound)
	}
}

// TestLeaseExpiry checks that keys go away when a lease runs out, which is how
// kube-apiserver expires Events.
func TestLeaseExpiry(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	cli := newClient(t)
	pfx := uniquePrefix(t)

	g, err := cli.Grant(ctx, 2)
	if err != nil {
		t.Fatalf("Grant: %v", err)
	}
	if _, err := cli.Put(ctx, pfx+"k", "v", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := cli.Watch(wctx, pfx+"k", clientv3.WithPrevKV())
	start := time.Now()
	evs := collectEvents(t, wch, 1, 20*time.Second)
	if evs[0].Type != clientv3.EventTypeDelete || evs[0].PrevKv == nil || string(evs[0].PrevKv.Value) != "v" {
		t.Errorf("expiry event = %v; want delete with prev_kv v", evs[0])
	}
	t.Logf("lease with TTL %d expired after %v", g.TTL, time.Since(start).Round(100*time.Millisecond))
	got, err := cli.Get(ctx, pfx+"k")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Kvs) != 0 {
		t.Errorf("key still present after lease expiry: %v", got.Kvs)
	}
	ttl, err := cli.TimeToLive(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ttl.TTL != -1 {
		t.Errorf("TimeToLive of expired lease = %d; want -1", ttl.TTL)
	}
}

// ---------------------------------------------------------------------------
// concurrency: Mutex and Election (client-side recipes on KV/Watch/Lease)
// ---------------------------------------------------------------------------

func newSession(t *testing.T, cli *clientv3.Client) *concurrency.Session {
	t.Helper()
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestMutex(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	pfx := uniquePrefix(t) + "lock"
	cli1, cli2 := newClient(t), newClient(t)
	s1, s2 := newSession(t, cli1), newSession(t, cli2)
	m1, m2 := concurrency.NewMutex(s1, pfx), concurrency.NewMutex(s2, pfx)

	if err := m1.Lock(ctx); err != nil {
		t.Fatalf("m1.Lock: %v", err)
	}
	if err := m2.TryLock(ctx); !errors.Is(err, concurrency.ErrLocked) {
		t.Fatalf("m2.TryLock while m1 holds the lock: err = %v; want %v", err, concurrency.ErrLocked)
	}
	// The owner compare holds for m1 only.
	own, err := cli1.Txn(ctx).If(m1.IsOwner()).Commit()
	if err != nil || !own.Succeeded {
		t.Errorf("m1.IsOwner() txn = %v, %v; want success", own, err)
	}

	acquired := make(chan error, 1)
	go func() { acquired <- m2.Lock(ctx) }()
	select {
	case err := <-acquired:
		t.Fatalf("m2.Lock returned (%v) while m1 holds the lock", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := m1.Unlock(ctx); err != nil {
		t.Fatalf("m1.Unlock: %v", err)
	}
	select {
	case err := <-acquired:
		if err != nil {
			t.Fatalf("m2.Lock: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("m2.Lock did not return after m1.Unlock")
	}
	if err := m1.TryLock(ctx); !errors.Is(err, concurrency.ErrLocked) {
		t.Errorf("m1.TryLock while m2 holds the lock: err = %v; want %v", err, concurrency.ErrLocked)
	}
	own, err = cli2.Txn(ctx).If(m2.IsOwner()).Commit()
	if err != nil || !own.Succeeded {
		t.Errorf("m2.IsOwner() txn = %v, %v; want success", own, err)
	}
	// Closing the holder's session (revoking its lease) releases the lock.
	if err := s2.Close(); err != nil {
		t.Fatalf("s2.Close: %v", err)
	}
	if err := m1.Lock(ctx); err != nil {
		t.Fatalf("m1.Lock after holder's session closed: %v", err)
	}
	if err := m1.Unlock(ctx); err != nil {
		t.Fatalf("m1.Unlock: %v", err)
	}
	left, err := cli1.Get(ctx, pfx, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(left.Kvs) != 0 {
		t.Errorf("lock keys left after unlock: %v", left.Kvs)
	}
}

func TestElection(t *testing.T) {
	ctx := testContext(t, 60*time.Second)
	pfx := uniquePrefix(t) + "election"
	cli1, cli2 := newClient(t), newClient(t)
	s1, s2 := newSession(t, cli1), newSession(t, cli2)
	e1, e2 := concurrency.NewElection(s1, pfx), concurrency.NewElection(s2, pfx)

	if _, err := e1.Leader(ctx); !errors.Is(err, concurrency.ErrElectionNoLeader) {
		t.Errorf("Leader before any campaign: err = %v; want %v", err, concurrency.ErrElectionNoLeader)
	}
	if err := e1.Campaign(ctx, "one"); err != nil {
		t.Fatalf("e1.Campaign: %v", err)
	}
	leaderIs := func(want string) {
		t.Helper()
		r, err := e2.Leader(ctx)
		if err != nil {
			t.Fatalf("Leader: %v", err)
		}
		if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != want {
			t.Errorf("Leader = %v; want %q", r.Kvs, want)
		}
	}
	leaderIs("one")

	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	obs := e2.Observe(octx)
	observe := func(want string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case r, ok := <-obs:
				if !ok {
					t.Fatalf("Observe channel closed while waiting for %q", want)
				}
				if len(r.Kvs) == 1 && string(r.Kvs[0].Value) == want {
					return
				}
			case <-deadline:
				t.Fatalf("Observe did not report leader value %q", want)
			}
		}
	}
	observe("one")

	campaigned := make(chan error, 1)
	go func() { campaigned <- e2.Campaign(ctx, "two") }()
	select {
	case err := <-campaigned:
		t.Fatalf("e2.Campaign returned (%v) while e1 leads", err)
	case <-time.After(500 * time.Millisecond):
	}

	if err := e1.Proclaim(ctx, "one-b"); err != nil {
		t.Fatalf("e1.Proclaim: %v", err)
	}
	observe("one-b")
	leaderIs("one-b")

	if err := e1.Resign(ctx); err != nil {
		t.Fatalf("e1.Resign: %v", err)
	}
	select {
	case err := <-campaigned:
		if err != nil {
			t.Fatalf("e2.Campaign: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("e2.Campaign did not win after e1 resigned")
	}
	observe("two")
	leaderIs("two")
	if err := e1.Proclaim(ctx, "again"); !errors.Is(err, concurrency.ErrElectionNotLeader) {
		t.Errorf("Proclaim by a resigned leader: err = %v; want %v", err, concurrency.ErrElectionNotLeader)
	}
	if err := e2.Resign(ctx); err != nil {
		t.Fatalf("e2.Resign: %v", err)
	}
	if _, err := e1.Leader(ctx); !errors.Is(err, concurrency.ErrElectionNoLeader) {
		t.Errorf("Leader after everyone resigned: err = %v; want %v", err, concurrency.ErrElectionNoLeader)
	}
}

// ---------------------------------------------------------------------------
// Maintenance, Cluster, health: what kube-apiserver and kubeadm call besides KV/Watch
// ---------------------------------------------------------------------------

// TestMaintenanceStatus checks the fields kube-apiserver reads from Status: the
// version (feature detection needs a semver >= 3.5.13 to enable
// RequestWatchProgress) and the db size (storage size metric).
func TestMaintenanceStatus(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	cli := newClient(t)
	st, err := cli.Status(ctx, endpoint())
	if err != nil {
		t.Fatalf("Status(%s): %v", endpoint(), err)
	}
	v, err := version.ParseSemantic(st.Version)
	if err != nil {
		t.Errorf("Status.Version %q is not semver: %v", st.Version, err)
	} else if v.LessThan(version.MustParseSemantic("3.5.13")) {
		t.Errorf("Status.Version %s < 3.5.13: kube-apiserver would disable RequestWatchProgress", v)
	}
	if st.Header == nil || st.Header.MemberId == 0 || st.Header.ClusterId == 0 {
		t.Errorf("Status header = %+v; want member and cluster ids", st.Header)
	} else if clusterSize() == 1 && st.Leader != st.Header.MemberId {
		t.Errorf("Status.Leader = %x; want this single member %x", st.Leader, st.Header.MemberId)
	} else if clusterSize() > 1 && st.Leader == 0 {
		t.Errorf("Status.Leader = 0; want the cluster's leader")
	}
	if st.DbSize <= 0 || st.RaftIndex == 0 || st.RaftTerm == 0 {
		t.Errorf("Status = dbSize %d raftIndex %d raftTerm %d; want all > 0", st.DbSize, st.RaftIndex, st.RaftTerm)
	}
}

func TestMemberList(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	cli := newClient(t)
	ml, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatalf("MemberList: %v", err)
	}
	if len(ml.Members) != clusterSize() {
		t.Fatalf("MemberList has %d members; want %d", len(ml.Members), clusterSize())
	}
	// The member that answered.
	m := ml.Members[0]
	for _, o := range ml.Members {
		if o.ID == ml.Header.MemberId {
			m = o
		}
	}
	if m.ID == 0 || m.ID != ml.Header.MemberId {
		t.Errorf("member id %x, header member id %x", m.ID, ml.Header.MemberId)
	}
	found := false
	for _, u := range m.ClientURLs {
		found = found || strings.TrimSuffix(u, "/") == strings.TrimSuffix(endpoint(), "/")
	}
	if !found {
		t.Errorf("member client URLs %v do not include %s", m.ClientURLs, endpoint())
	}
	// The client's own endpoint sync relies on this.
	if err := cli.Sync(ctx); err != nil {
		t.Errorf("client Sync: %v", err)
	}
}

func TestGRPCHealth(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	cli := newClient(t)
	r, err := healthpb.NewHealthClient(cli.ActiveConnection()).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("grpc.health.v1.Health/Check: %v", err)
	}
	if r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health status = %s; want SERVING", r.Status)
	}
}

func TestHTTPHealth(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(endpoint(), "/")+"/health", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /health: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /health = %d %s", resp.StatusCode, body)
	}
	var h struct {
		Health string `json:"health"`
	}
	if err := json.Unmarshal(body, &h); err != nil || h.Health != "true" {
		t.Errorf("GET /health body = %s; want {\"health\":\"true\",...}", body)
	}
}
