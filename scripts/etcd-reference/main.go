// Builds the etcd server from etcd's published Go modules, as a reference
// for oxcd's benchmarks and tests.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
