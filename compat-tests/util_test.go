// Package compat runs etcd's official Go client and Kubernetes' apiserver storage
// conformance tests against a running etcd-compatible endpoint (OXCD_ENDPOINT).
package compat

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/grpclog"
)

// envEndpoint names the variable holding the client URL of the server under test.
const envEndpoint = "OXCD_ENDPOINT"

// envProgressInterval is set by run.sh to the value it passed to the server as
// --watch-progress-notify-interval. Tests that wait for periodic progress
// notifications only run when it is set.
const envProgressInterval = "OXCD_WATCH_PROGRESS_NOTIFY_INTERVAL"

func TestMain(m *testing.M) {
	if os.Getenv(envEndpoint) == "" {
		fmt.Fprintf(os.Stderr, "%s is not set: point it at a running etcd-compatible server (e.g. http://127.0.0.1:2379), or use run.sh\n", envEndpoint)
		os.Exit(2)
	}
	// The gRPC library logs every reconnect at INFO; keep only errors.
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, os.Stderr))
	os.Exit(m.Run())
}

func endpoint() string { return os.Getenv(envEndpoint) }

// clusterSize is the number of members of the cluster the endpoint belongs
// to (OXCD_CLUSTER_SIZE, set by run.sh in cluster mode; 1 otherwise).
func clusterSize() int {
	if n, err := strconv.Atoi(os.Getenv("OXCD_CLUSTER_SIZE")); err == nil && n > 0 {
		return n
	}
	return 1
}

func clientConfig() clientv3.Config {
	return clientv3.Config{
		Endpoints:   []string{endpoint()},
		DialTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
	}
}

// newClient returns a client for the endpoint, closed when the test ends.
func newClient(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientConfig())
	if err != nil {
		t.Fatalf("clientv3.New(%s): %v", endpoint(), err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// testContext is cancelled when the test ends or after the given duration.
func testContext(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// uniquePrefix returns a key prefix that no other test (or earlier run against the
// same server) uses: "/compat/<test name>/<random>/".
func uniquePrefix(t testing.TB) string {
	name := strings.NewReplacer("/", "_", " ", "_", "=", "_").Replace(t.Name())
	return fmt.Sprintf("/compat/%s/%s/", name, randomHex(4))
}
