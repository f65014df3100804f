//go:build !k8s036

// k8s.io/apiserver v0.37 line: helpers whose upstream signatures changed after 0.36,
// and the suite functions that only exist in 0.37.

package compat

import (
	"fmt"
	"testing"

	"go.etcd.io/etcd/client/v3/kubernetes"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/apis/example"
	"k8s.io/apiserver/pkg/features"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/etcd3"
	etcdfeature "k8s.io/apiserver/pkg/storage/feature"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	featuregatetesting "k8s.io/component-base/featuregate/testing"
)

func newRecorders(c *kubernetes.Client) (*storagetesting.KVRecorder, *storagetesting.KubernetesRecorder) {
	lists := storagetesting.NewKubernetesRecorder(c.Kubernetes)
	return storagetesting.NewKVRecorder(c.KV, lists), lists
}

func streamReads(kv *storagetesting.KVRecorder) uint64 { return kv.GetStreamReadsAndReset() }

// rangeStreamModes: 0.37 serves lists through the RangeStream RPC when the
// EtcdRangeStream gate is on (the default); run list tests both ways.
func rangeStreamModes() []bool { return []bool{false, true} }

func setRangeStream(t *testing.T, on bool) {
	t.Helper()
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.EtcdRangeStream, on)
}

// resetFeatureSupportChecker gives the test a fresh etcd feature checker (RangeStream
// support is remembered process-wide once a server reported it unimplemented).
func resetFeatureSupportChecker(t *testing.T) {
	t.Helper()
	orig := etcdfeature.DefaultFeatureSupportChecker
	etcdfeature.DefaultFeatureSupportChecker = etcdfeature.NewDefaultFeatureSupportChecker()
	t.Cleanup(func() { etcdfeature.DefaultFeatureSupportChecker = orig })
}

// UpdateTransformer implements storagetesting.InterfaceWithTransformerOverride.
func (s *testStore) UpdateTransformer(modify storagetesting.TransformerModifier) func() {
	orig := s.xf.load()
	s.xf.store(modify(orig))
	return func() { s.xf.store(orig) }
}

func TestStorageDeleteWithConflictAndMissingExpectedTransformOrDecodeError(t *testing.T) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.AllowUnsafeMalformedObjectDeletion, true)
	codec := &flakyCodec{Codec: newTestCodec()}
	ctx, s := newTestStore(t, withCodec(codec))
	storagetesting.RunTestDeleteWithConflictAndMissingExpectedTransformOrDecodeError(ctx, t, s, codec.setFailing)
}

func TestStorageDeleteWithConflictAndExpectedTransformError(t *testing.T) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.AllowUnsafeMalformedObjectDeletion, true)
	ctx, s := newTestStore(t)
	good := s.xf.load()
	setFailing := func(on bool) {
		if on {
			s.xf.store(readFailure{Transformer: good, err: fmt.Errorf("injected transform failure")})
		} else {
			s.xf.store(good)
		}
	}
	storagetesting.RunTestDeleteExpectedTransformOrDecodeError(ctx, t, s, setFailing)
}

func TestStorageDeleteWithConflictAndExpectedDecodeError(t *testing.T) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.AllowUnsafeMalformedObjectDeletion, true)
	codec := &flakyCodec{Codec: newTestCodec()}
	ctx, s := newTestStore(t, withCodec(codec))
	storagetesting.RunTestDeleteExpectedTransformOrDecodeError(ctx, t, s, codec.setFailing)
}

func TestStorageDeleteWithSuggestionAndMissingExpectedTransformOrDecodeError(t *testing.T) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.AllowUnsafeMalformedObjectDeletion, true)
	ctx, s := newTestStore(t)
	storagetesting.RunTestDeleteWithSuggestionAndMissingExpectedTransformOrDecodeError(ctx, t, s)
}

func TestStorageGetListWithErrorAggregation(t *testing.T) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.AllowUnsafeMalformedObjectDeletion, true)
	ctx, s := newTestStore(t, withBareKeys())
	w := s.wrapped(etcd3.NewStoreWithUnsafeCorruptObjectDeletion(s.etcd, podsResource))
	storagetesting.RunTestGetListWithErrorAggregation(ctx, t, w, corruptObjectErr())
}

func TestStorageGetListWithoutErrorAggregation(t *testing.T) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.AllowUnsafeMalformedObjectDeletion, false)
	ctx, s := newTestStore(t, withBareKeys())
	storagetesting.RunTestGetListWithoutErrorAggregation(ctx, t, s, corruptObjectErr())
}

func TestStorageWatchWithUnsafeDelete(t *testing.T) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.AllowUnsafeMalformedObjectDeletion, true)
	ctx, s := newTestStore(t)
	storagetesting.RunTestWatchWithUnsafeDelete(ctx, t, s, corruptObjectErr())
}

// TestStorageGetListStreamMultiChunk: lists served by RangeStream over several
// chunks return the right snapshot for consistent, exact and not-older-than reads.
func TestStorageGetListStreamMultiChunk(t *testing.T) {
	setRangeStream(t, true)
	resetFeatureSupportChecker(t)
	ctx, s := newTestStore(t)

	const pods = 25
	for i := 0; i < pods; i++ {
		name := fmt.Sprintf("pod-%02d", i)
		pod := &example.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
		if err := s.Create(ctx, "/pods/ns/"+name, pod, &example.Pod{}, 0); err != nil {
			t.Fatal(err)
		}
	}
	list := func(rv string, match metav1.ResourceVersionMatch) *example.PodList {
		t.Helper()
		out := &example.PodList{}
		opts := storage.ListOptions{ResourceVersion: rv, ResourceVersionMatch: match, Predicate: storage.Everything, Recursive: true}
		if err := s.GetList(ctx, "/pods/", opts, out); err != nil {
			t.Fatalf("GetList(rv=%q, match=%q): %v", rv, match, err)
		}
		if n := streamReads(s.kv); n == 0 {
			t.Errorf("GetList(rv=%q, match=%q) was not served by RangeStream", rv, match)
		}
		if out.Continue != "" || out.RemainingItemCount != nil {
			t.Errorf("streamed list paginated: continue %q, remaining %v", out.Continue, out.RemainingItemCount)
		}
		return out
	}
	snap := list("", "")
	if len(snap.Items) != pods {
		t.Errorf("consistent list: %d items; want %d", len(snap.Items), pods)
	}
	extra := &example.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "pod-extra"}}
	if err := s.Create(ctx, "/pods/ns/pod-extra", extra, &example.Pod{}, 0); err != nil {
		t.Fatal(err)
	}
	exact := list(snap.ResourceVersion, metav1.ResourceVersionMatchExact)
	if len(exact.Items) != pods || exact.ResourceVersion != snap.ResourceVersion {
		t.Errorf("exact list at %s: %d items at RV %s; want %d items at %s", snap.ResourceVersion, len(exact.Items), exact.ResourceVersion, pods, snap.ResourceVersion)
	}
	newer := list(snap.ResourceVersion, "")
	if len(newer.Items) != pods+1 {
		t.Errorf("not-older-than list: %d items; want %d", len(newer.Items), pods+1)
	}
}
