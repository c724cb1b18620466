// Command cluster shows a mirror shared by two nodes whose dirty-region
// log lives in etcd (dirtylog/etcdlog), and what happens when one node
// dies in the middle of a write.
//
// It starts a one-member etcd on loopback in a temporary directory, two
// file-backed legs, and two nodes, each with its own etcd client, its own
// etcdlog.Log and its own mirror.Mirror over the same legs. Both nodes
// write concurrently (each to its own half of the device, as the users of
// a shared disk would). Then node-a dies after one of its writes reached
// the first leg but not the second: its lease expires, node-b's janitor
// turns node-a's dirty regions into resync work, node-b's mirror copies
// them, and the program prints the final status with both legs identical.
//
//	go run ./examples/cluster
//
// It takes no flags: -h prints the usage and exits 0, anything else exits 2
// with one line. SIGINT or SIGTERM stops it, removing the temporary
// directory (etcd's data and the legs).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/etcdlog"
	"github.com/dmlog/dmlog/mirror"
)

const (
	regionSize = 64 << 10
	regions    = 64
	devSize    = regions * regionSize
	block      = 4096
	// node-a's lease is short, so the demo does not wait long for its
	// death to be noticed; node-b's is longer, so a loaded machine (a CI
	// runner, say) cannot make the survivor miss its renewals as well.
	leaseA = time.Second
	leaseB = 5 * time.Second
)

// parseArgs parses the command line (the demo has no flags). It returns
// flag.ErrHelp after printing the usage to stdout for -h, and a one-line
// error for anything else.
func parseArgs(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "usage: cluster\n\nTwo nodes' mirrors on an embedded etcd: one dies mid-write, the survivor\nresyncs its regions. Takes no flags or arguments. Exit status: 0 legs\nidentical, 1 error or mismatch, 2 usage.\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.Usage()
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (cluster takes no arguments)", fs.Arg(0))
	}
	return nil
}

func main() {
	err := parseArgs(os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintf(os.Stderr, "cluster: %v (see -h)\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

// crashLeg is one node's handle on a shared leg file. Once the node is
// "killed" its writes no longer reach the file, as for a dead process.
// The kill is tied to one write, chosen by the node's writer before it
// issues it (tornWrite): that write reaches leg 0, and leg 1's copy of it
// waits until leg 0 has it and is then dropped as the node dies, so the
// legs differ (a write torn between the legs). Writes issued before the
// choice are not affected, however their leg writes interleave with it.
type crashLeg struct {
	f      *os.File
	leg    int
	killed *atomic.Bool
	tear   *atomic.Pointer[tornWrite]
}

// tornWrite is the write a node dies in. tore is closed once leg 0 has it.
type tornWrite struct {
	off  int64
	data []byte
	tore chan struct{}
}

func (c *crashLeg) ReadAt(p []byte, off int64) (int, error) { return c.f.ReadAt(p, off) }

func (c *crashLeg) WriteAt(p []byte, off int64) (int, error) {
	if c.killed.Load() {
		return len(p), nil // the process is gone: nothing reaches the disk
	}
	t := c.tear.Load()
	if t == nil || t.off != off || !bytes.Equal(t.data, p) {
		return c.f.WriteAt(p, off)
	}
	if c.leg == 0 {
		n, err := c.f.WriteAt(p, off)
		close(t.tore)
		return n, err
	}
	select { // leg 1: the node dies before this copy is issued
	case <-t.tore:
	case <-time.After(10 * time.Second): // leg 0's copy never came: die anyway
	}
	c.killed.Store(true)
	return len(p), nil
}

func (c *crashLeg) Sync() error {
	if c.killed.Load() {
		return nil
	}
	return c.f.Sync()
}

// node is one machine: an etcd client, a log and a mirror.
type node struct {
	name   string
	cli    *clientv3.Client
	log    *etcdlog.Log
	m      *mirror.Mirror
	killed atomic.Bool
	// armed asks the writer to die in its next write; tear is that write.
	armed atomic.Bool
	tear  atomic.Pointer[tornWrite]
}

func openNode(ctx context.Context, name string, lease time.Duration, endpoint string, legPaths []string) (*node, error) {
	n := &node{name: name}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, Logger: zap.NewNop(), DialTimeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	n.cli = cli
	s := new(mirror.LegsSyncer)
	n.log, err = etcdlog.Open(ctx, cli, etcdlog.Options{
		Name: "vol1", Node: name, RegionSize: regionSize, DeviceSize: devSize,
		Sync: dirtylog.NoSync, LeaseTTL: lease, FlushCallback: s.Sync,
	})
	if err != nil {
		return nil, err
	}
	var legs []mirror.Leg
	for i, p := range legPaths {
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		legs = append(legs, &crashLeg{f: f, leg: i, killed: &n.killed, tear: &n.tear})
	}
	n.m, err = mirror.New(legs, n.log, mirror.Options{Size: devSize, Names: []string{"leg0", "leg1"}, Syncer: s, ClearDelay: time.Second})
	return n, err
}

// writes records what the nodes wrote: the writes the mirror acknowledged,
// and the write a node died in, which may or may not have landed (the
// device may hold it or what was there before, as after any crash).
type writes struct {
	mu      sync.Mutex
	acked   map[int64][]byte
	inDoubt map[int64][]byte
}

// writer writes random blocks to regions [lo, hi) until stop, recording
// them in w.
func (n *node) writer(seed uint64, lo, hi int, stop <-chan struct{}, w *writes) {
	rng := rand.New(rand.NewPCG(seed, seed))
	for {
		select {
		case <-stop:
			return
		default:
		}
		off := int64(lo*regionSize) + int64(rng.IntN((hi-lo)*regionSize/block))*block
		p := make([]byte, block)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		if n.killed.Load() {
			return
		}
		if n.armed.Load() {
			n.tear.Store(&tornWrite{off: off, data: p, tore: make(chan struct{})})
		}
		if _, err := n.m.WriteAt(p, off); err != nil || n.killed.Load() {
			// The node died in this write: not acknowledged, and it may
			// have reached a leg (the torn write does).
			w.mu.Lock()
			w.inDoubt[off] = p
			w.mu.Unlock()
			return
		}
		w.mu.Lock()
		w.acked[off] = p
		w.mu.Unlock()
	}
}

func startEtcd(ctx context.Context, dir string) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.TickMs, cfg.ElectionMs = 10, 100
	lc, _ := url.Parse("http://127.0.0.1:0")
	lp, _ := url.Parse("http://127.0.0.1:0")
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*lc}, []url.URL{*lc}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*lp}, []url.URL{*lp}
	cfg.InitialCluster = cfg.Name + "=" + lp.String()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case <-time.After(30 * time.Second):
		e.Close()
		return nil, errors.New("etcd not ready after 30 s")
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
}

// run runs the demo in a temporary directory, which it removes when it
// returns. Cancelling parent (SIGINT, SIGTERM) stops it early: it returns
// an "interrupted" error after stopping etcd and removing the directory.
func run(parent context.Context, out io.Writer) (err error) {
	ctx, cancel := context.WithTimeout(parent, 2*time.Minute)
	defer cancel()
	defer func() {
		if parent.Err() != nil {
			err = fmt.Errorf("interrupted (temporary files removed): %w", err)
		}
	}()
	dir, err := os.MkdirTemp("", "dmlog-cluster")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	e, err := startEtcd(ctx, dir)
	if err != nil {
		return err
	}
	defer e.Close()
	endpoint := "http://" + e.Clients[0].Addr().String()
	fmt.Fprintf(out, "etcd: one member at %s, data in a temporary directory\n", endpoint)

	var legPaths []string
	for i := range 2 {
		p := filepath.Join(dir, fmt.Sprintf("leg%d.img", i))
		if err := os.WriteFile(p, make([]byte, devSize), 0o600); err != nil {
			return err
		}
		legPaths = append(legPaths, p)
	}
	a, err := openNode(ctx, "node-a", leaseA, endpoint, legPaths)
	if err != nil {
		return err
	}
	b, err := openNode(ctx, "node-b", leaseB, endpoint, legPaths)
	if err != nil {
		return err
	}
	defer func() {
		b.m.Close()
		b.log.Close()
		b.cli.Close()
	}()
	fmt.Fprintf(out, "legs: 2 files of %d KiB, %d regions of %d KiB; nodes node-a and node-b\n", devSize>>10, regions, regionSize>>10)

	// Both nodes write concurrently, each to its own half.
	w := &writes{acked: map[int64][]byte{}, inDoubt: map[int64][]byte{}}
	stopA, stopB := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.writer(1, 0, regions/2, stopA, w) }()
	go func() { defer wg.Done(); b.writer(2, regions/2, regions, stopB, w) }()
	stopWriters := func() {
		select {
		case <-stopA:
		default:
			close(stopA)
		}
		close(stopB)
		wg.Wait()
	}
	select {
	case <-time.After(300 * time.Millisecond):
	case <-ctx.Done():
		stopWriters()
		return ctx.Err()
	}

	// node-a dies in the middle of a write: its next write reaches leg 0
	// only, and then the node is gone (its etcd connection too).
	a.armed.Store(true)
	for !a.killed.Load() {
		if ctx.Err() != nil {
			stopWriters()
			return ctx.Err()
		}
		time.Sleep(time.Millisecond)
	}
	a.cli.Close() // no more lease renewals: the lease will expire
	close(stopA)
	dirty := 0
	for r := dirtylog.Region(0); r < regions; r++ {
		if clean, err := b.log.IsClean(ctx, r); err == nil && !clean && r < regions/2 {
			dirty++
		}
	}
	fmt.Fprintf(out, "node-a killed mid-write: %d of its regions are marked dirty in etcd; legs differ: %v\n",
		dirty, !bytes.Equal(mustRead(legPaths[0]), mustRead(legPaths[1])))

	// node-b keeps writing while node-a's lease runs out; its janitor then
	// turns node-a's marks into resync work, and its mirror copies them.
	t0 := time.Now()
	for b.log.SyncCount() == regions {
		if ctx.Err() != nil {
			stopWriters()
			if parent.Err() != nil {
				return parent.Err()
			}
			return errors.New("node-a's marks never became resync work")
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Fprintf(out, "node-b's janitor: node-a's lease expired after %.1fs; %d regions out of sync\n",
		time.Since(t0).Seconds(), regions-int(b.log.SyncCount()))
	stopWriters()
	if err := b.m.WaitInSync(ctx); err != nil {
		return fmt.Errorf("waiting for resync: %w", err)
	}
	if err := b.m.Sync(); err != nil {
		return err
	}
	fmt.Fprintf(out, "node-b resynced them: %d/%d regions in sync\n", b.log.SyncCount(), regions)

	l0, l1 := mustRead(legPaths[0]), mustRead(legPaths[1])
	lost := 0
	overwritten := 0
	for off, p := range w.acked {
		// The write node-a died in may have overwritten an acknowledged
		// one at the same offset: either is a correct outcome.
		if d, ok := w.inDoubt[off]; ok && bytes.Equal(l0[off:off+block], d) {
			overwritten++
			p = d
		}
		if !bytes.Equal(l0[off:off+block], p) || !bytes.Equal(l1[off:off+block], p) {
			lost++
		}
	}
	fmt.Fprintf(out, "mirror status (node-b): %s\n", b.m.Status())
	fmt.Fprintf(out, "log status (node-b):    %s\n", b.log.Status())
	fmt.Fprintf(out, "legs identical: %v; acknowledged writes: %d, lost: %d", bytes.Equal(l0, l1), len(w.acked), lost)
	if overwritten > 0 {
		fmt.Fprintf(out, " (%d overwritten by the write node-a died in, which landed)", overwritten)
	}
	fmt.Fprintln(out)
	if !bytes.Equal(l0, l1) || lost != 0 {
		return errors.New("the legs differ or an acknowledged write was lost")
	}
	return nil
}

func mustRead(p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		panic(err)
	}
	return b
}
