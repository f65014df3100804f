package compat

// Kubernetes' storage conformance suite (k8s.io/apiserver/pkg/storage/testing) run
// against the etcd3 storage implementation (k8s.io/apiserver/pkg/storage/etcd3),
// which is what kube-apiserver talks to etcd with, pointed at OXCD_ENDPOINT.
//
// Upstream runs these from internal tests of package etcd3 with an embedded etcd per
// test. Here every test gets its own etcd3 store on the shared server, isolated by a
// unique key prefix; the pieces upstream reaches through unexported fields (the
// transformer, the keys function, the compaction callback) are rebuilt from the
// exported API. Line-specific tests live in k8s_storage_037_test.go (default) and
// k8s_storage_036_test.go (-tags k8s036).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"

	"k8s.io/apimachinery/pkg/api/apitesting"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apiserver/pkg/apis/example"
	examplev1 "k8s.io/apiserver/pkg/apis/example/v1"
	"k8s.io/apiserver/pkg/features"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/etcd3"
	etcdfeature "k8s.io/apiserver/pkg/storage/feature"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
	"k8s.io/apiserver/pkg/storage/value"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	featuregatetesting "k8s.io/component-base/featuregate/testing"
	"k8s.io/utils/clock"
)

var (
	k8sScheme = runtime.NewScheme()
	k8sCodecs = serializer.NewCodecFactory(k8sScheme)
)

func init() {
	metav1.AddToGroupVersion(k8sScheme, metav1.SchemeGroupVersion)
	utilruntime.Must(example.AddToScheme(k8sScheme))
	utilruntime.Must(examplev1.AddToScheme(k8sScheme))
}

// storedValuePrefix is prepended to every stored value by the test transformer, so
// the tests can tell transformed data from raw data.
const storedValuePrefix = "test!"

// maxPageSize mirrors the etcd3 store's cap on the page size it grows to when
// selectors filter out items (maxLimit in store.go).
const maxPageSize = 10000

var podsResource = schema.GroupResource{Resource: "pods"}

// ---------------------------------------------------------------------------
// Transformer that tests can swap at run time
// ---------------------------------------------------------------------------

// switchTransformer is handed to etcd3.New; the store and its watcher call it for
// every value, and it forwards to whatever transformer is installed at the moment.
// This is how the suite's UpdatePrefixTransformer/UpdateTransformer hooks change the
// store's transformer without access to the store's fields.
type switchTransformer struct {
	mu  sync.RWMutex
	cur value.Transformer
}

func (x *switchTransformer) load() value.Transformer {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.cur
}

func (x *switchTransformer) store(next value.Transformer) {
	x.mu.Lock()
	x.cur = next
	x.mu.Unlock()
}

func (x *switchTransformer) TransformFromStorage(ctx context.Context, data []byte, dataCtx value.Context) ([]byte, bool, error) {
	return x.load().TransformFromStorage(ctx, data, dataCtx)
}

func (x *switchTransformer) TransformToStorage(ctx context.Context, data []byte, dataCtx value.Context) ([]byte, error) {
	return x.load().TransformToStorage(ctx, data, dataCtx)
}

// readFailure fails every read with err and writes through the wrapped transformer.
type readFailure struct {
	value.Transformer
	err error
}

func (r readFailure) TransformFromStorage(context.Context, []byte, value.Context) ([]byte, bool, error) {
	return nil, false, r.err
}

// corruptObjectErr returns the error the etcd3 package itself uses to mark an
// untransformable object (its type is unexported): the error produced by the
// exported corrupt-object error wrapper around a transformer that cannot read.
func corruptObjectErr() error {
	failing := readFailure{Transformer: storagetesting.NewPrefixTransformer([]byte(storedValuePrefix), false), err: errors.New("bits flipped")}
	_, _, err := etcd3.WithCorruptObjErrorHandlingTransformer(failing).TransformFromStorage(context.Background(), nil, value.DefaultContext("k"))
	if err == nil {
		panic("corrupt-object transformer wrapper returned no error")
	}
	return err
}

// flakyCodec fails Decode while failing is set.
type flakyCodec struct {
	runtime.Codec
	failing atomic.Bool
}

func (c *flakyCodec) setFailing(on bool) { c.failing.Store(on) }

func (c *flakyCodec) Decode(data []byte, defaults *schema.GroupVersionKind, into runtime.Object) (runtime.Object, *schema.GroupVersionKind, error) {
	if c.failing.Load() {
		return nil, nil, errors.New("injected decode failure")
	}
	return c.Codec.Decode(data, defaults, into)
}

// ---------------------------------------------------------------------------
// Store under test
// ---------------------------------------------------------------------------

type storeConfig struct {
	codec          runtime.Codec
	transformer    value.Transformer
	resourcePrefix string
	groupResource  schema.GroupResource
	leaseConfig    etcd3.LeaseManagerConfig
	bareKeys       bool
}

type storeOption func(*storeConfig)

func withCodec(c runtime.Codec) storeOption { return func(o *storeConfig) { o.codec = c } }

func withTransformer(x value.Transformer) storeOption {
	return func(o *storeConfig) { o.transformer = x }
}

// withBareKeys gives the store no key prefix, like upstream's tests: etcd keys are
// the storage keys ("/pods/ns/name"). For the few suite functions that compare etcd
// keys in errors with storage keys. The resource prefix is wiped before and after.
func withBareKeys() storeOption { return func(o *storeConfig) { o.bareKeys = true } }

func newTestCodec() runtime.Codec {
	return apitesting.TestCodec(k8sCodecs, examplev1.SchemeGroupVersion)
}

// testStore is an etcd3 store for one test, plus the hooks the suite needs.
type testStore struct {
	storage.Interface // what the suite calls (the etcd3 store, possibly wrapped)

	etcd       storage.Interface // the etcd3 store itself
	client     *kubernetes.Client
	kv         *storagetesting.KVRecorder
	lists      *storagetesting.KubernetesRecorder
	codec      runtime.Codec
	xf         *switchTransformer
	pathPrefix string // etcd key prefix of this store, ends in "/"
	resPrefix  string // resource prefix, e.g. "/pods/"
}

// newTestStore builds an etcd3 store on a fresh client, with a key prefix no other
// test uses. Everything is closed and the keys deleted when the test ends.
func newTestStore(t *testing.T, opts ...storeOption) (context.Context, *testStore) {
	t.Helper()
	cfg := storeConfig{
		codec:          newTestCodec(),
		transformer:    storagetesting.NewPrefixTransformer([]byte(storedValuePrefix), false),
		resourcePrefix: "/pods/",
		groupResource:  podsResource,
		leaseConfig:    etcd3.NewDefaultLeaseManagerConfig(),
	}
	// Upstream tests shorten lease reuse to 1s so TTL tests don't wait for the default.
	cfg.leaseConfig.ReuseDurationSeconds = 1
	for _, o := range opts {
		o(&cfg)
	}

	client, err := kubernetes.New(clientConfig())
	if err != nil {
		t.Fatalf("kubernetes.New(%s): %v", endpoint(), err)
	}
	kv, lists := newRecorders(client)
	client.KV = kv
	client.Kubernetes = lists

	pathPrefix, wipe := uniquePrefix(t), ""
	if cfg.bareKeys {
		pathPrefix, wipe = "/", cfg.resourcePrefix
	} else {
		wipe = pathPrefix
	}
	wipeKeys := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := client.Client.KV.Delete(ctx, wipe, clientv3.WithPrefix()); err != nil {
			t.Logf("deleting %s*: %v", wipe, err)
		}
	}
	if cfg.bareKeys {
		wipeKeys()
	}
	t.Cleanup(func() {
		wipeKeys()
		_ = client.Close()
	})

	versioner := storage.APIObjectVersioner{}
	compactor := etcd3.NewCompactor(client.Client, 0, clock.RealClock{}, nil)
	t.Cleanup(compactor.Stop)
	xf := &switchTransformer{cur: cfg.transformer}
	keyPrefix := pathPrefix
	if cfg.bareKeys {
		keyPrefix = ""
	}
	s, err := etcd3.New(client, compactor, cfg.codec,
		func() runtime.Object { return &example.Pod{} },
		func() runtime.Object { return &example.PodList{} },
		keyPrefix, cfg.resourcePrefix, cfg.groupResource, xf, cfg.leaseConfig,
		etcd3.NewDefaultDecoder(cfg.codec, versioner), versioner)
	if err != nil {
		t.Fatalf("etcd3.New: %v", err)
	}
	t.Cleanup(s.Close)
	return context.Background(), &testStore{
		Interface:  s,
		etcd:       s,
		client:     client,
		kv:         kv,
		lists:      lists,
		codec:      cfg.codec,
		xf:         xf,
		pathPrefix: pathPrefix,
		resPrefix:  cfg.resourcePrefix,
	}
}

// wrapped returns the same store with the suite's calls going to iface instead.
func (s *testStore) wrapped(iface storage.Interface) *testStore {
	c := *s
	c.Interface = iface
	return &c
}

// UpdatePrefixTransformer implements storagetesting.InterfaceWithPrefixTransformer.
func (s *testStore) UpdatePrefixTransformer(modify storagetesting.PrefixTransformerModifier) func() {
	orig, ok := s.xf.load().(*storagetesting.PrefixTransformer)
	if !ok {
		panic(fmt.Sprintf("installed transformer is %T, not *PrefixTransformer", s.xf.load()))
	}
	cp := *orig
	s.xf.store(modify(&cp))
	return func() { s.xf.store(orig) }
}

// etcdKey is the key the store writes for a storage key such as "/pods/ns/name".
func (s *testStore) etcdKey(key string) string {
	return s.pathPrefix + strings.TrimPrefix(key, "/")
}

// keys lists the etcd keys under the store's resource prefix (what kube-apiserver's
// size estimation reads with a keys-only Range).
func (s *testStore) keys(ctx context.Context) ([]string, error) {
	p := s.etcdKey(s.resPrefix)
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	resp, err := s.client.KV.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Key))
	}
	return out, nil
}

// storedObjectValidation checks what the store wrote: the transformer's prefix,
// then an encoded Pod without resourceVersion or selfLink.
func (s *testStore) storedObjectValidation() storagetesting.KeyValidation {
	return func(ctx context.Context, t *testing.T, key string) {
		resp, err := s.client.Client.KV.Get(ctx, s.etcdKey(key))
		if err != nil {
			t.Fatalf("Get %s: %v", s.etcdKey(key), err)
		}
		if len(resp.Kvs) == 0 {
			t.Fatalf("no value stored under %s", s.etcdKey(key))
		}
		raw := resp.Kvs[0].Value
		if !strings.HasPrefix(string(raw), storedValuePrefix) {
			t.Fatalf("stored value lacks transformer prefix %q: %q", storedValuePrefix, raw)
		}
		obj, err := runtime.Decode(s.codec, raw[len(storedValuePrefix):])
		if err != nil {
			t.Fatalf("decoding stored object: %v (%q)", err, raw)
		}
		pod := obj.(*example.Pod)
		if pod.ResourceVersion != "" {
			t.Errorf("stored object has resourceVersion %q; want empty", pod.ResourceVersion)
		}
		if pod.SelfLink != "" {
			t.Errorf("stored object has selfLink %q; want empty", pod.SelfLink)
		}
	}
}

// increaseRV writes a key outside every store's prefix and returns its revision.
func (s *testStore) increaseRV() storagetesting.IncreaseRVFunc {
	return func(ctx context.Context, t *testing.T) int64 {
		resp, err := s.client.Client.KV.Put(ctx, "/compat/increaseRV", "ok")
		if err != nil {
			t.Fatalf("Put increaseRV: %v", err)
		}
		return resp.Header.Revision
	}
}

// compaction compacts the server at a resource version the way kube-apiserver's
// compactor does (etcd3.Compact: a Txn on compact_rev_key, then Compact), and waits
// until this store's compactor has observed it when ListFromCacheSnapshot is on.
// The server is shared, so compact_rev_key has usually been bumped by earlier tests:
// read its current version first rather than assuming a fresh server.
func (s *testStore) compaction() storagetesting.Compaction {
	return func(ctx context.Context, t *testing.T, resourceVersion string) {
		rv, err := s.Versioner().ParseResourceVersion(resourceVersion)
		if err != nil {
			t.Fatal(err)
		}
		rev := int64(rv)
		done := false
		for attempt := 0; attempt < 5 && !done; attempt++ {
			cur, err := s.client.Client.KV.Get(ctx, "compact_rev_key")
			if err != nil {
				t.Fatalf("Get compact_rev_key: %v", err)
			}
			var version int64
			if len(cur.Kvs) > 0 {
				version = cur.Kvs[0].Version
			}
			_, _, compacted, err := etcd3.Compact(ctx, s.client.Client, version, rev)
			if err != nil {
				t.Fatalf("etcd3.Compact(version %d, rev %d): %v", version, rev, err)
			}
			done = compacted == rev
		}
		if !done {
			t.Fatalf("could not win the compact_rev_key Txn to compact at %d", rev)
		}
		if !utilfeature.DefaultFeatureGate.Enabled(features.ListFromCacheSnapshot) {
			return
		}
		deadline := time.Now().Add(30 * time.Second)
		for s.CompactRevision() < rev {
			if time.Now().After(deadline) {
				t.Fatalf("store compactor still at %d, want %d", s.CompactRevision(), rev)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// callsValidation checks how many values were read and how many Range calls a list
// made (the store doubles its page size when selectors drop items).
func (s *testStore) callsValidation() storagetesting.CallsValidation {
	return func(t *testing.T, pageSize, processed uint64) {
		pt, ok := s.xf.load().(*storagetesting.PrefixTransformer)
		if !ok {
			t.Fatalf("installed transformer is %T, not *PrefixTransformer", s.xf.load())
		}
		if reads := pt.GetReadsAndReset(); reads != processed {
			t.Errorf("values transformed: %d; want %d", reads, processed)
		}
		wantCalls := uint64(1)
		if pageSize != 0 {
			limit := pageSize
			for sum := uint64(1); sum < processed; wantCalls++ {
				limit = min(limit*2, maxPageSize)
				sum += limit
			}
		}
		if calls := s.kv.GetReadsAndReset() + streamReads(s.kv); calls != wantCalls {
			t.Fatalf("Range calls: %d; want %d", calls, wantCalls)
		}
	}
}

// requireProgressNotifyInterval skips tests that wait for the server's periodic
// watch progress notifications unless run.sh started it with a short interval
// (upstream configures its embedded etcd with 1s for these tests).
func requireProgressNotifyInterval(t *testing.T) {
	t.Helper()
	v := strings.TrimSpace(os.Getenv(envProgressInterval))
	if v == "" {
		t.Skipf("server's --watch-progress-notify-interval unknown: set %s (run.sh starts the server with 1s)", envProgressInterval)
	}
	d, err := time.ParseDuration(v)
	if err != nil || d > 5*time.Second {
		t.Skipf("%s=%q: these tests need an interval of at most 5s", envProgressInterval, v)
	}
}

// ---------------------------------------------------------------------------
// Tests shared by both lines (same exported signatures in 0.36 and 0.37)
// ---------------------------------------------------------------------------

func TestStorageCreate(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestCreate(ctx, t, s, s.storedObjectValidation())
}

func TestStorageCreateWithTTL(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestCreateWithTTL(ctx, t, s)
}

func TestStorageCreateWithKeyExist(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestCreateWithKeyExist(ctx, t, s)
}

func TestStorageGet(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestGet(ctx, t, s)
}

func TestStorageUnconditionalDelete(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestUnconditionalDelete(ctx, t, s)
}

func TestStorageConditionalDelete(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestConditionalDelete(ctx, t, s)
}

func TestStorageDeleteWithSuggestion(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestDeleteWithSuggestion(ctx, t, s)
}

func TestStorageDeleteWithSuggestionAndConflict(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestDeleteWithSuggestionAndConflict(ctx, t, s)
}

func TestStorageDeleteWithSuggestionOfDeletedObject(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestDeleteWithSuggestionOfDeletedObject(ctx, t, s)
}

func TestStorageValidateDeletionWithSuggestion(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestValidateDeletionWithSuggestion(ctx, t, s)
}

func TestStorageValidateDeletionWithOnlySuggestionValid(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestValidateDeletionWithOnlySuggestionValid(ctx, t, s)
}

func TestStorageDeleteWithConflict(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestDeleteWithConflict(ctx, t, s)
}

func TestStoragePreconditionalDeleteWithSuggestion(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestPreconditionalDeleteWithSuggestion(ctx, t, s)
}

func TestStoragePreconditionalDeleteWithOnlySuggestionPass(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestPreconditionalDeleteWithOnlySuggestionPass(ctx, t, s)
}

func TestStorageListPaging(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestListPaging(ctx, t, s)
}

func TestStorageGetListNonRecursive(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestGetListNonRecursive(ctx, t, s.increaseRV(), s)
}

func TestStorageGetListRecursivePrefix(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestGetListRecursivePrefix(ctx, t, s)
}

func TestStorageKeySchema(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestKeySchema(ctx, t, s)
}

func TestStorageGuaranteedUpdate(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestGuaranteedUpdate(ctx, t, s, s.storedObjectValidation())
}

func TestStorageGuaranteedUpdateWithTTL(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestGuaranteedUpdateWithTTL(ctx, t, s)
}

func TestStorageGuaranteedUpdateChecksStoredData(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestGuaranteedUpdateChecksStoredData(ctx, t, s)
}

func TestStorageGuaranteedUpdateWithConflict(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestGuaranteedUpdateWithConflict(ctx, t, s)
}

func TestStorageGuaranteedUpdateWithSuggestionAndConflict(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestGuaranteedUpdateWithSuggestionAndConflict(ctx, t, s)
}

func TestStorageTransformationFailure(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestTransformationFailure(ctx, t, s)
}

func TestStorageList(t *testing.T) {
	for _, rangeStream := range rangeStreamModes() {
		t.Run(fmt.Sprintf("rangeStream=%v", rangeStream), func(t *testing.T) {
			setRangeStream(t, rangeStream)
			resetFeatureSupportChecker(t)
			ctx, s := newTestStore(t)
			storagetesting.RunTestList(ctx, t, s, s.compaction(), false, s.lists)
			streams := streamReads(s.kv)
			if rangeStream && streams == 0 {
				t.Error("no list was served by RangeStream with EtcdRangeStream on")
			}
			if !rangeStream && streams > 0 {
				t.Errorf("%d RangeStream calls with EtcdRangeStream off", streams)
			}
		})
	}
}

func TestStorageConsistentList(t *testing.T) {
	for _, rangeStream := range rangeStreamModes() {
		t.Run(fmt.Sprintf("rangeStream=%v", rangeStream), func(t *testing.T) {
			setRangeStream(t, rangeStream)
			resetFeatureSupportChecker(t)
			ctx, s := newTestStore(t)
			storagetesting.RunTestConsistentList(ctx, t, s, s.increaseRV(), false, true, false)
		})
	}
}

func TestStorageCompactRevision(t *testing.T) {
	// The store learns about compactions through its compactor's watch on
	// compact_rev_key, which only runs with ListFromCacheSnapshot.
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.ListFromCacheSnapshot, true)
	ctx, s := newTestStore(t)
	storagetesting.RunTestCompactRevision(ctx, t, s, s.increaseRV(), s.compaction())
}

func TestStorageListContinuation(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestListContinuation(ctx, t, s, s.callsValidation())
}

func TestStorageListPaginationRareObject(t *testing.T) {
	// With ListFromCacheSnapshot the compactor's reads of compact_rev_key would be
	// counted with the list's Range calls.
	featuregatetesting.SetFeatureGateDuringTest(t, utilfeature.DefaultFeatureGate, features.ListFromCacheSnapshot, false)
	ctx, s := newTestStore(t)
	storagetesting.RunTestListPaginationRareObject(ctx, t, s, s.callsValidation())
}

func TestStorageListContinuationWithFilter(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestListContinuationWithFilter(ctx, t, s, s.callsValidation())
}

func TestStorageNamespaceScopedList(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestNamespaceScopedList(ctx, t, s)
}

func TestStorageListInconsistentContinuation(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestListInconsistentContinuation(ctx, t, s, s.compaction())
}

func TestStorageListResourceVersionMatch(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestListResourceVersionMatch(ctx, t, s)
}

func TestStorageStats(t *testing.T) {
	for _, sizeEstimate := range []bool{true, false} {
		t.Run(fmt.Sprintf("SizeBasedListCostEstimate=%v", sizeEstimate), func(t *testing.T) {
			ctx, s := newTestStore(t)
			if sizeEstimate {
				if err := s.EnableResourceSizeEstimation(s.keys); err != nil {
					t.Fatal(err)
				}
			}
			storagetesting.RunTestStats(ctx, t, s, s.codec, s.xf, sizeEstimate)
		})
	}
}

// TestStorageGetCurrentResourceVersion: the store's current resource version is the
// server's revision (Range on the resource prefix with limit 1 -> header.revision),
// also after writes elsewhere in the keyspace.
func TestStorageGetCurrentResourceVersion(t *testing.T) {
	ctx, s := newTestStore(t)
	created := &example.Pod{}
	pod := &example.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "pod-1"}}
	if err := s.Create(ctx, "/pods/ns/pod-1", pod, created, 0); err != nil {
		t.Fatalf("Create: %v", err)
	}
	podRV, err := s.Versioner().ParseResourceVersion(created.ResourceVersion)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := s.GetCurrentResourceVersion(ctx)
	if err != nil {
		t.Fatalf("GetCurrentResourceVersion: %v", err)
	}
	if cur < podRV {
		t.Errorf("current RV %d < created pod's RV %d", cur, podRV)
	}
	rev := s.increaseRV()(ctx, t)
	cur, err = s.GetCurrentResourceVersion(ctx)
	if err != nil {
		t.Fatalf("GetCurrentResourceVersion: %v", err)
	}
	if cur < uint64(rev) {
		t.Errorf("current RV %d < revision of an unrelated write %d", cur, rev)
	}
	got := &example.Pod{}
	if err := s.Get(ctx, "/pods/ns/pod-1", storage.GetOptions{}, got); err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.ResourceVersion != created.ResourceVersion {
		t.Errorf("pod RV changed from %s to %s by an unrelated write", created.ResourceVersion, got.ResourceVersion)
	}
}

// TestStorageFeatureSupportChecker: kube-apiserver enables RequestWatchProgress-based
// features (consistent reads from cache, WatchList) only if Maintenance.Status reports
// a version >= 3.5.13; etcd3.New starts that check.
func TestStorageFeatureSupportChecker(t *testing.T) {
	resetFeatureSupportChecker(t)
	_, _ = newTestStore(t)
	deadline := time.Now().Add(20 * time.Second)
	for !etcdfeature.DefaultFeatureSupportChecker.Supports(storage.RequestWatchProgress) {
		if time.Now().After(deadline) {
			t.Fatal("RequestWatchProgress not detected as supported (Maintenance.Status missing, or version not a semver >= 3.5.13)")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Watch
// ---------------------------------------------------------------------------

func TestStorageWatch(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestWatch(ctx, t, s)
}

func TestStorageClusterScopedWatch(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestClusterScopedWatch(ctx, t, s)
}

func TestStorageNamespaceScopedWatch(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestNamespaceScopedWatch(ctx, t, s)
}

func TestStorageDeleteTriggerWatch(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestDeleteTriggerWatch(ctx, t, s)
}

func TestStorageWatchFromZero(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestWatchFromZero(ctx, t, s, s.compaction())
}

func TestStorageWatchFromNonZero(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestWatchFromNonZero(ctx, t, s)
}

func TestStorageDelayedWatchDelivery(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestDelayedWatchDelivery(ctx, t, s)
}

func TestStorageWatchError(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestWatchError(ctx, t, s)
}

func TestStorageWatchContextCancel(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestWatchContextCancel(ctx, t, s)
}

func TestStorageWatcherTimeout(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestWatcherTimeout(ctx, t, s)
}

func TestStorageWatchDeleteEventObjectHaveLatestRV(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestWatchDeleteEventObjectHaveLatestRV(ctx, t, s)
}

func TestStorageWatchInitializationSignal(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunTestWatchInitializationSignal(ctx, t, s)
}

func TestStorageProgressNotify(t *testing.T) {
	requireProgressNotifyInterval(t)
	ctx, s := newTestStore(t)
	storagetesting.RunOptionalTestProgressNotify(ctx, t, s, s.increaseRV())
}

func TestStorageWatchDispatchBookmarkEvents(t *testing.T) {
	requireProgressNotifyInterval(t)
	ctx, s := newTestStore(t)
	storagetesting.RunTestWatchDispatchBookmarkEvents(ctx, t, s, false)
}

func TestStorageSendInitialEventsBackwardCompatibility(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunSendInitialEventsBackwardCompatibility(ctx, t, s)
}

func TestStorageWatchErrorIsBlockingFurtherEvents(t *testing.T) {
	ctx, s := newTestStore(t)
	storagetesting.RunWatchErrorIsBlockingFurtherEvents(ctx, t, s)
}
