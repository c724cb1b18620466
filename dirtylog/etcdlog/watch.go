package etcdlog

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// watchLoop feeds the cache from a watch on the log's prefix, starting
// after the cache's revision. When the watch breaks or falls behind a
// compaction (a gap), the cache is rebuilt from a linearizable read and
// the watch restarts after it.
func (l *Log) watchLoop() {
	defer l.wg.Done()
	for {
		ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(l.bg))
		l.watchMu.Lock()
		l.watchCtx = ctx
		l.watchMu.Unlock()
		wch := l.cli.Watch(ctx, l.k.p, clientv3.WithPrefix(), clientv3.WithRev(l.c.rev.Load()+1), clientv3.WithProgressNotify())
		rebuild := l.follow(wch)
		cancel()
		if l.bg.Err() != nil {
			return
		}
		if rebuild {
			l.rebuild()
		}
	}
}

// follow applies watch responses until the watch ends; it reports whether
// the cache must be rebuilt.
func (l *Log) follow(wch clientv3.WatchChan) bool {
	for {
		select {
		case resp, ok := <-wch:
			if !ok {
				return true
			}
			if resp.CompactRevision != 0 || resp.Canceled || resp.Err() != nil {
				return true
			}
			if resp.IsProgressNotify() {
				l.c.apply(nil, resp.Header.Revision)
				continue
			}
			l.c.apply(resp.Events, 0)
		case resume := <-l.pause:
			// Test hook: stop watching until resume closes, then pick up
			// after the cache's revision without rebuilding.
			select {
			case <-resume:
			case <-l.bg.Done():
			}
			return false
		case <-l.bg.Done():
			return false
		}
	}
}

// rebuild reloads the cache, retrying until it succeeds or the log closes.
func (l *Log) rebuild() {
	for delay := 10 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		ctx, cancel := context.WithTimeout(l.bg, l.opts.requestTimeout())
		err := l.reload(ctx)
		cancel()
		if err == nil {
			l.rebuilds.Add(1)
			return
		}
		select {
		case <-time.After(delay):
		case <-l.bg.Done():
			return
		}
	}
}

// requestProgress asks the watch for a progress notification, which moves
// the cache's revision to the store's once every event before it arrived.
func (l *Log) requestProgress() {
	l.watchMu.Lock()
	ctx := l.watchCtx
	l.watchMu.Unlock()
	if ctx != nil && ctx.Err() == nil {
		_ = l.cli.RequestProgress(ctx)
	}
}

// pauseWatch stops the watch until the returned function is called (for
// tests that need a watch gap).
func (l *Log) pauseWatch() (resume func()) {
	ch := make(chan struct{})
	l.pause <- ch
	return func() { close(ch) }
}
