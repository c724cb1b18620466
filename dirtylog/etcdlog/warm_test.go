package etcdlog

import (
	"testing"

	_ "go.etcd.io/etcd/client/v3"
	_ "go.etcd.io/etcd/client/v3/concurrency"
	_ "go.etcd.io/etcd/server/v3/embed"
)

func TestWarm(t *testing.T) {}
