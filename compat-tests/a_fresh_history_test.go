package compat

// This file's name sorts first so that its tests run first (Go runs tests in
// file-name order) on the fresh server run.sh starts for each version line:
// RunWatchSemantics watches from resourceVersion "1". Through the watch cache that
// needs a cache that started at revision 1 (a server nobody wrote to yet); directly
// against etcd3 it needs the server's history from revision 2 on (never compacted).

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apiserver/pkg/features"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	featuregatetesting "k8s.io/component-base/featuregate/testing"
)

// requireUncompactedHistory skips the test when the server's history has been
// compacted (revision 1 can no longer be read).
func requireUncompactedHistory(t *testing.T) {
	t.Helper()
	cli := newClient(t)
	_, err := cli.Get(testContext(t, 10*time.Second), "/compat/history-probe", clientv3.WithRev(1))
	if errors.Is(err, rpctypes.ErrCompacted) {
		t.Skip("server history was compacted before this test; it needs a fresh server (run.sh runs it first on one)")
	}
	if err != nil {
		t.Fatalf("probing revision 1: %v", err)
	}
}

// requirePristineServer skips the test unless nothing was written to the server yet.
func requirePristineServer(t *testing.T) {
	t.Helper()
	cli := newClient(t)
	resp, err := cli.Get(testContext(t, 10*time.Second), "/compat/history-probe")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if resp.Header.Revision > 1 {
		t.Skipf("server is at revision %d; this test needs a server nobody wrote to yet (run.sh runs it first on a fresh one)", resp.Header.Revision)
	}
}

func TestCacherWatchSemantics(t *testing.T) {
	requirePristineServer(t)
	_, d, _ := newTestCacher(t)
	storagetesting.RunWatchSemantics(context.Background(), t, cacheVisibleCreates{d})
}

func TestStorageWatchSemantics(t *testing.T) {
	requireUncompactedHistory(t)
	for _, rangeStream := range rangeStreamModes() {
		t.Run(fmt.Sprintf("rangeStream=%v", rangeStream), func(t *testing.T) {
			setRangeStream(t, rangeStream)
			t.Run("WatchSemantics", func(t *testing.T) {
				ctx, s := newTestStore(t)
				storagetesting.RunWatchSemantics(ctx, t, s)
			})
			t.Run("WatchSemanticsWithConcurrentDecode", func(t *testing.T) {
				featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.ConcurrentWatchObjectDecode, true)
				ctx, s := newTestStore(t)
				storagetesting.RunWatchSemantics(ctx, t, s)
			})
			t.Run("WatchSemanticInitialEventsExtended", func(t *testing.T) {
				ctx, s := newTestStore(t)
				storagetesting.RunWatchSemanticInitialEventsExtended(ctx, t, s)
			})
			t.Run("WatchListMatchSingle", func(t *testing.T) {
				ctx, s := newTestStore(t)
				storagetesting.RunWatchListMatchSingle(ctx, t, s)
			})
		})
	}
}
