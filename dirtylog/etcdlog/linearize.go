package etcdlog

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A linearization round: one linearizable read of the store's revision,
// shared by every caller that arrived before it was sent.
type round struct {
	done chan struct{}
	rev  int64
	err  error
}

// linearize brings the cache up to date with every change etcd had
// committed when it was called (a linearizable read of the current
// revision, then a wait for the watch to get there). Concurrent callers
// share rounds, so a burst of queries costs about two round trips.
func (l *Log) linearize(ctx context.Context) error {
	l.linMu.Lock()
	r := l.linNext
	if r == nil {
		r = &round{done: make(chan struct{})}
		l.linNext = r
	}
	if !l.linBusy {
		l.linBusy = true
		l.linNext = nil
		l.wg.Add(1)
		go l.runRounds(r)
	}
	l.linMu.Unlock()
	select {
	case <-r.done:
	case <-ctx.Done():
		return fmt.Errorf("etcdlog: linearizable read: %w", ctx.Err())
	}
	if r.err != nil {
		return fmt.Errorf("etcdlog: linearizable read: %w", r.err)
	}
	return l.barrier(ctx, r.rev)
}

// runRounds sends round r, then whatever round callers queued meanwhile.
func (l *Log) runRounds(r *round) {
	defer l.wg.Done()
	for r != nil {
		ctx, cancel := context.WithTimeout(l.bg, l.opts.requestTimeout())
		resp, err := l.cli.Get(ctx, l.k.meta(), clientv3.WithCountOnly())
		cancel()
		if err != nil {
			r.err = err
		} else {
			r.rev = resp.Header.Revision
		}
		close(r.done)
		l.linMu.Lock()
		r, l.linNext = l.linNext, nil
		if r == nil {
			l.linBusy = false
		}
		l.linMu.Unlock()
	}
}
