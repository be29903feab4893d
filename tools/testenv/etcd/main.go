// Command etcd is upstream etcd's server entry point, built from the module
// proxy as the storage backend of the local test control plane.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
