package etcdlog_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/etcdlog"
)

// startEtcd starts a one-member etcd on loopback in a temporary directory.
func startEtcd() (*embed.Etcd, string, func()) {
	dir, err := os.MkdirTemp("", "etcdlog-example")
	if err != nil {
		panic(err)
	}
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.TickMs, cfg.ElectionMs = 10, 100
	lc, _ := url.Parse("http://127.0.0.1:0")
	lp, _ := url.Parse("http://127.0.0.1:0")
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*lc}, []url.URL{*lc}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*lp}, []url.URL{*lp}
	cfg.InitialCluster = cfg.Name + "=" + lp.String()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		panic(err)
	}
	<-e.Server.ReadyNotify()
	return e, e.Clients[0].Addr().String(), func() { e.Close(); os.RemoveAll(dir) }
}

// Two nodes share one log: a region is dirty until every node that marked
// it has cleared it.
func Example() {
	_, addr, stop := startEtcd()
	defer stop()
	ctx := context.Background()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, Logger: zap.NewNop()})
	if err != nil {
		panic(err)
	}
	defer cli.Close()

	open := func(node string) *etcdlog.Log {
		l, err := etcdlog.Open(ctx, cli, etcdlog.Options{
			Name: "vol1", Node: node, RegionSize: 64 << 10, DeviceSize: 64 << 20,
			Sync: dirtylog.NoSync, LeaseTTL: 5 * time.Second,
		})
		if err != nil {
			panic(err)
		}
		return l
	}
	a, b := open("node-a"), open("node-b")
	defer a.Close()
	defer b.Close()

	a.MarkRegion(7) // both nodes write region 7
	b.MarkRegion(7)
	_ = a.Flush(ctx) // one etcd transaction each
	_ = b.Flush(ctx)
	a.ClearRegion(7)
	_ = a.Flush(ctx)
	clean, _ := b.IsClean(ctx, 7)
	fmt.Println("after a's clear, clean:", clean)
	b.ClearRegion(7)
	_ = b.Flush(ctx)
	clean, _ = a.IsClean(ctx, 7)
	fmt.Println("after b's clear, clean:", clean)
	fmt.Printf("%s | %q\n", a.Status(), a.Table())
	// Output:
	// after a's clear, clean: false
	// after b's clear, clean: true
	// 3 etcd vol1 A | "etcd 3 vol1 128 nosync "
}

// A node whose lease expired is fenced: its next flush fails with
// ErrFenced, and it must stop writing.
func ExampleLog_Flush() {
	_, addr, stop := startEtcd()
	defer stop()
	ctx := context.Background()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, Logger: zap.NewNop()})
	if err != nil {
		panic(err)
	}
	defer cli.Close()
	l, err := etcdlog.Open(ctx, cli, etcdlog.Options{
		Name: "vol1", Node: "node-a", RegionSize: 64 << 10, DeviceSize: 64 << 20, LeaseTTL: time.Second,
	})
	if err != nil {
		panic(err)
	}
	defer l.Close()
	l.MarkRegion(3)
	fmt.Println("flush:", l.Flush(ctx))
	// Someone (an operator, or etcd after the TTL) ends the node's lease.
	leases, _ := cli.Leases(ctx)
	for _, ls := range leases.Leases {
		_, _ = cli.Revoke(ctx, ls.ID)
	}
	l.MarkRegion(4)
	err = l.Flush(ctx)
	fmt.Println("fenced:", errors.Is(err, etcdlog.ErrFenced))
	// Output:
	// flush: <nil>
	// fenced: true
}
