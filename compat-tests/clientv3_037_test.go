//go:build !k8s036

// Client features of the 3.7 line only (client/v3 v3.7.x): KV.GetStream (RangeStream RPC).

package compat

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestKVGetStream(t *testing.T) {
	ctx := testContext(t, 30*time.Second)
	cli := newClient(t)
	pfx := uniquePrefix(t)

	// Enough keys for several chunks (etcd chunks streams at a few keys per message).
	const n = 35
	var firstRev int64
	for i := 0; i < n; i++ {
		r, err := cli.Put(ctx, fmt.Sprintf("%sk%03d", pfx, i), fmt.Sprintf("v%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			firstRev = r.Header.Revision
		}
	}
	ch, err := cli.GetStream(ctx, pfx, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("GetStream: %v", err)
	}
	var keys []string
	chunks := 0
	var last *clientv3.RangeStreamResponse
	for r := range ch {
		if err := r.Err(); err != nil {
			t.Fatalf("GetStream chunk %d: %v", chunks, err)
		}
		chunks++
		for _, kv := range r.Kvs {
			keys = append(keys, string(kv.Key))
		}
		rr := r
		last = &rr
	}
	if len(keys) != n {
		t.Fatalf("GetStream returned %d keys; want %d", len(keys), n)
	}
	for i, k := range keys {
		if want := fmt.Sprintf("%sk%03d", pfx, i); k != want {
			t.Fatalf("key %d = %q; want %q (ascending key order)", i, k, want)
		}
	}
	if last == nil || last.Header == nil || last.Header.Revision < firstRev+n-1 {
		t.Errorf("final chunk header = %+v; want revision >= %d", last, firstRev+n-1)
	}
	if last != nil && last.Count != n {
		t.Errorf("final chunk count = %d; want %d", last.Count, n)
	}
	t.Logf("%d keys in %d chunks", n, chunks)

	// The merged helper matches a plain Range at the same revision.
	ch, err = cli.GetStream(ctx, pfx, clientv3.WithPrefix(), clientv3.WithRev(firstRev+9))
	if err != nil {
		t.Fatalf("GetStream at revision: %v", err)
	}
	merged, err := clientv3.GetStreamToGetResponse(ch)
	if err != nil {
		t.Fatalf("GetStream at revision: %v", err)
	}
	if len(merged.Kvs) != 10 {
		t.Errorf("GetStream at revision %d returned %d keys; want 10", firstRev+9, len(merged.Kvs))
	}

	// A compacted revision fails the stream with ErrCompacted.
	if _, err := cli.Compact(ctx, firstRev+1); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	ch, err = cli.GetStream(ctx, pfx, clientv3.WithPrefix(), clientv3.WithRev(firstRev))
	if err == nil {
		_, err = clientv3.GetStreamToGetResponse(ch)
	}
	if !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("GetStream at compacted revision: err = %v; want %v", err, rpctypes.ErrCompacted)
	}
}
