//go:build k8s036

// k8s.io/apiserver v0.36 line (-tags k8s036, go.036.mod): helpers whose upstream
// signatures differ from 0.37.

package compat

import (
	"testing"

	"go.etcd.io/etcd/client/v3/kubernetes"
	"k8s.io/apiserver/pkg/features"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	featuregatetesting "k8s.io/component-base/featuregate/testing"
)

func newRecorders(c *kubernetes.Client) (*storagetesting.KVRecorder, *storagetesting.KubernetesRecorder) {
	return storagetesting.NewKVRecorder(c.KV), storagetesting.NewKubernetesRecorder(c.Kubernetes)
}

// streamReads: 0.36 never lists through RangeStream.
func streamReads(*storagetesting.KVRecorder) uint64 { return 0 }

func rangeStreamModes() []bool { return []bool{false} }

func setRangeStream(*testing.T, bool) {}

// resetFeatureSupportChecker: 0.36 has no constructor for a fresh checker (and no
// RangeStream state to reset); the process-wide one checks each endpoint once.
func resetFeatureSupportChecker(*testing.T) {}

// corruptingStore implements 0.36's storagetesting.InterfaceWithCorruptTransformer.
type corruptingStore struct{ *testStore }

func (s corruptingStore) CorruptTransformer() func() {
	orig := s.xf.load()
	s.xf.store(readFailure{Transformer: orig, err: corruptObjectErr()})
	return func() { s.xf.store(orig) }
}

func TestStorageWatchWithUnsafeDelete(t *testing.T) {
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.AllowUnsafeMalformedObjectDeletion, true)
	ctx, s := newTestStore(t)
	storagetesting.RunTestWatchWithUnsafeDelete(ctx, t, corruptingStore{s})
}
