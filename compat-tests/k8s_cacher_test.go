package compat

// The same conformance suite run through kube-apiserver's watch cache
// (k8s.io/apiserver/pkg/storage/cacher) on top of the etcd3 store: the cacher lists
// and then watches the server with progress notifications, and serves consistent
// reads from the cache after asking the server for a progress notification
// (RequestWatchProgress), the way kube-apiserver runs by default. Upstream runs these
// from internal tests of package cacher; the setup here uses only its exported API.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/apis/example"
	"k8s.io/apiserver/pkg/features"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/cacher"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/tools/cache"
	featuregatetesting "k8s.io/component-base/featuregate/testing"
	"k8s.io/utils/clock"
)

type cacherConfig struct {
	clusterScoped bool
}

type cacherOption func(*cacherConfig)

// clusterScoped keys objects as /pods/<name> instead of /pods/<namespace>/<name>.
func clusterScoped(c *cacherConfig) { c.clusterScoped = true }

// podFields are the selectable fields of an example Pod.
func podAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	pod, ok := obj.(*example.Pod)
	if !ok {
		return nil, nil, fmt.Errorf("%T is not a Pod", obj)
	}
	return labels.Set(pod.Labels), fields.Set{
		"metadata.name":      pod.Name,
		"metadata.namespace": pod.Namespace,
		"spec.nodeName":      pod.Spec.NodeName,
		"spec.restartPolicy": string(pod.Spec.RestartPolicy),
		"status.phase":       string(pod.Status.Phase),
	}, nil
}

// newTestCacher returns a cache delegator (what kube-apiserver's registry calls)
// over a watch cache over a fresh etcd3 store, with the cache initialised.
func newTestCacher(t *testing.T, opts ...cacherOption) (context.Context, storage.Interface, *testStore) {
	t.Helper()
	var cfg cacherConfig
	for _, o := range opts {
		o(&cfg)
	}
	ctx, s := newTestStore(t)

	keyFunc := func(obj runtime.Object) (string, error) { return storage.NamespaceKeyFunc(s.resPrefix, obj) }
	if cfg.clusterScoped {
		keyFunc = func(obj runtime.Object) (string, error) { return storage.NoNamespaceKeyFunc(s.resPrefix, obj) }
	}
	// Indexes as kube-apiserver configures them for pods (node name, namespace).
	indexers := cache.Indexers{
		"f:spec.nodeName": func(obj interface{}) ([]string, error) {
			return []string{obj.(*example.Pod).Spec.NodeName}, nil
		},
		"f:metadata.namespace": func(obj interface{}) ([]string, error) {
			return []string{obj.(*example.Pod).Namespace}, nil
		},
	}
	c, err := cacher.NewCacherFromConfig(cacher.Config{
		Storage:             s.etcd,
		Versioner:           storage.APIObjectVersioner{},
		GroupResource:       podsResource,
		EventsHistoryWindow: cacher.DefaultEventFreshDuration,
		ResourcePrefix:      s.resPrefix,
		KeyFunc:             keyFunc,
		GetAttrsFunc:        podAttrs,
		IndexerFuncs: storage.IndexerFuncs{
			"spec.nodeName": func(obj runtime.Object) string { return obj.(*example.Pod).Spec.NodeName },
		},
		Indexers:    &indexers,
		NewFunc:     func() runtime.Object { return &example.Pod{} },
		NewListFunc: func() runtime.Object { return &example.PodList{} },
		Codec:       s.codec,
		Clock:       clock.RealClock{},
	})
	if err != nil {
		t.Fatalf("NewCacherFromConfig: %v", err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.Wait(waitCtx); err != nil {
		c.Stop()
		t.Fatalf("watch cache did not initialise: %v", err)
	}
	d := cacher.NewCacheDelegator(c, s.etcd)
	t.Cleanup(func() {
		d.Stop()
		c.Stop()
	})
	return ctx, d, s
}

// cacheVisibleCreates makes Create return only once the watch cache serves the
// created object, so tests that read from the cache right after a write see it.
type cacheVisibleCreates struct {
	storage.Interface
}

func (c cacheVisibleCreates) Create(ctx context.Context, key string, obj, out runtime.Object, ttl uint64) error {
	if err := c.Interface.Create(ctx, key, obj, out, ttl); err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, wait.ForeverTestTimeout, true, func(ctx context.Context) (bool, error) {
		cur := &example.Pod{}
		err := c.Interface.Get(ctx, key, storage.GetOptions{ResourceVersion: "0"}, cur)
		if storage.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return equality.Semantic.DeepEqual(cur, out), nil
	})
}

// TestCacherConsistentList: a LIST without resourceVersion is served from the watch
// cache only after the cache caught up with the server's current revision, which the
// cacher learns through RequestWatchProgress; the response RV must be exact.
func TestCacherConsistentList(t *testing.T) {
	for _, snapshot := range []bool{true, false} {
		t.Run(fmt.Sprintf("ListFromCacheSnapshot=%v", snapshot), func(t *testing.T) {
			featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.ListFromCacheSnapshot, snapshot)
			ctx, d, s := newTestCacher(t)
			storagetesting.RunTestConsistentList(ctx, t, d, s.increaseRV(), true, true, snapshot)
		})
	}
}

func TestCacherGetListNonRecursive(t *testing.T) {
	for _, snapshot := range []bool{true, false} {
		t.Run(fmt.Sprintf("ListFromCacheSnapshot=%v", snapshot), func(t *testing.T) {
			featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.ListFromCacheSnapshot, snapshot)
			ctx, d, s := newTestCacher(t)
			storagetesting.RunTestGetListNonRecursive(ctx, t, s.increaseRV(), d)
		})
	}
}

func TestCacherGet(t *testing.T) {
	ctx, d, _ := newTestCacher(t)
	storagetesting.RunTestGet(ctx, t, d)
}

func TestCacherGetListRecursivePrefix(t *testing.T) {
	ctx, d, _ := newTestCacher(t)
	storagetesting.RunTestGetListRecursivePrefix(ctx, t, d)
}

func TestCacherListPaging(t *testing.T) {
	ctx, d, _ := newTestCacher(t)
	storagetesting.RunTestListPaging(ctx, t, d)
}

func TestCacherNamespaceScopedList(t *testing.T) {
	ctx, d, _ := newTestCacher(t)
	storagetesting.RunTestNamespaceScopedList(ctx, t, d)
}

func TestCacherGuaranteedUpdateWithConflict(t *testing.T) {
	ctx, d, _ := newTestCacher(t)
	storagetesting.RunTestGuaranteedUpdateWithConflict(ctx, t, d)
}

func TestCacherConditionalDelete(t *testing.T) {
	ctx, d, _ := newTestCacher(t)
	storagetesting.RunTestConditionalDelete(ctx, t, d)
}

func TestCacherWatch(t *testing.T) {
	ctx, d, _ := newTestCacher(t)
	storagetesting.RunTestWatch(ctx, t, d)
}

func TestCacherDeleteTriggerWatch(t *testing.T) {
	ctx, d, _ := newTestCacher(t)
	storagetesting.RunTestDeleteTriggerWatch(ctx, t, d)
}

func TestCacherWatchFromNonZero(t *testing.T) {
	ctx, d, _ := newTestCacher(t)
	storagetesting.RunTestWatchFromNonZero(ctx, t, d)
}

func TestCacherDelayedWatchDelivery(t *testing.T) {
	ctx, d, _ := newTestCacher(t)
	storagetesting.RunTestDelayedWatchDelivery(ctx, t, d)
}

func TestCacherWatcherTimeout(t *testing.T) {
	ctx, d, _ := newTestCacher(t)
	storagetesting.RunTestWatcherTimeout(ctx, t, d)
}

func TestCacherWatchDeleteEventObjectHaveLatestRV(t *testing.T) {
	ctx, d, _ := newTestCacher(t)
	storagetesting.RunTestWatchDeleteEventObjectHaveLatestRV(ctx, t, d)
}

func TestCacherWatchInitializationSignal(t *testing.T) {
	ctx, d, _ := newTestCacher(t)
	storagetesting.RunTestWatchInitializationSignal(ctx, t, d)
}

func TestCacherClusterScopedWatch(t *testing.T) {
	ctx, d, _ := newTestCacher(t, clusterScoped)
	storagetesting.RunTestClusterScopedWatch(ctx, t, d)
}

func TestCacherNamespaceScopedWatch(t *testing.T) {
	ctx, d, _ := newTestCacher(t)
	storagetesting.RunTestNamespaceScopedWatch(ctx, t, d)
}

func TestCacherWatchDispatchBookmarkEvents(t *testing.T) {
	ctx, d, _ := newTestCacher(t)
	storagetesting.RunTestWatchDispatchBookmarkEvents(ctx, t, d, true)
}

func TestCacherWatchBookmarksWithCorrectResourceVersion(t *testing.T) {
	ctx, d, _ := newTestCacher(t)
	storagetesting.RunTestOptionalWatchBookmarksWithCorrectResourceVersion(ctx, t, d)
}

func TestCacherSendInitialEventsBackwardCompatibility(t *testing.T) {
	ctx, d, _ := newTestCacher(t)
	storagetesting.RunSendInitialEventsBackwardCompatibility(ctx, t, d)
}

func TestCacherWatchSemanticInitialEventsExtended(t *testing.T) {
	_, d, _ := newTestCacher(t)
	storagetesting.RunWatchSemanticInitialEventsExtended(context.Background(), t, cacheVisibleCreates{d})
}

func TestCacherWatchListMatchSingle(t *testing.T) {
	_, d, _ := newTestCacher(t)
	storagetesting.RunWatchListMatchSingle(context.Background(), t, cacheVisibleCreates{d})
}

// TestCacherWatchSemantics is in a_fresh_history_test.go.
