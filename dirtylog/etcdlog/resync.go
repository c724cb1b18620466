package etcdlog

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmlog/dmlog/dirtylog"
)

// ResyncWork claims an out-of-sync region for this node to recover:
// first a region some node's writer is waiting on (see RemoteRecovering),
// oldest request first, else the next one at or after this node's resync
// cursor. The claim is a key bound to this node's lease, created only if
// no node holds one and the region is still out of sync, so one node
// recovers a region at a time; SetRegionSync releases it, and the lease
// releases it if this node dies. ok is false when nothing is left to
// claim or the log is suspended.
func (l *Log) ResyncWork(ctx context.Context) (dirtylog.Region, bool, error) {
	if l.closed.Load() {
		return 0, false, fmt.Errorf("etcdlog: resync work: %w", dirtylog.ErrClosed)
	}
	if l.suspended.Load() {
		return 0, false, nil
	}
	if l.fenced.Load() {
		return 0, false, l.fencedErr("resync work")
	}
	skip := map[dirtylog.Region]bool{}
	for attempt := 0; attempt < 64; attempt++ {
		cand, ok := l.c.nextCandidate(skip)
		if !ok {
			return 0, false, nil
		}
		ci := int(uint64(cand.r) / l.chunk)
		self := l.opts.Node
		sess := l.session()
		resp, err := l.cli.Txn(ctx).If(
			l.aliveCmp(),
			clientv3.Compare(clientv3.CreateRevision(l.k.claim(cand.r)), "=", 0),
			clientv3.Compare(clientv3.ModRevision(l.k.sync(ci)), "=", cand.syncMod),
		).Then(
			clientv3.OpPut(l.k.claim(cand.r), self, clientv3.WithLease(sess.Lease())),
		).Else(
			clientv3.OpGet(l.k.node(self)),
		).Commit()
		if err != nil {
			return 0, false, fmt.Errorf("etcdlog: claiming region %d: %w", cand.r, err)
		}
		if !resp.Succeeded {
			if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 0 || kvs[0].CreateRevision != l.joinRev.Load() {
				l.fence()
				return 0, false, l.fencedErr("resync work")
			}
		}
		if err := l.barrier(ctx, resp.Header.Revision); err != nil {
			return 0, false, err
		}
		if resp.Succeeded {
			if cand.scanned {
				l.c.advanceCursor(cand.r)
			}
			return cand.r, true, nil
		}
		if attempt > 32 {
			skip[cand.r] = true // contended: let the cache settle, try others
		}
	}
	return 0, false, nil
}

// SetRegionSync records r's sync state in etcd (a compare-and-swap of its
// sync chunk), ends this node's recovery claim on r and, when r is now in
// sync, drops the requests to resync it first. A region already in the
// requested state is not counted twice. It blocks for one etcd round trip
// (bounded by Options.RequestTimeout); a failure (this node fenced, etcd
// unreachable) leaves the stored state as it was, which is safe: the
// region is resynced again, and is reported through OnEvent when fenced.
func (l *Log) SetRegionSync(r dirtylog.Region, inSync bool) {
	if uint64(r) >= l.count || l.closed.Load() {
		return
	}
	if !inSync {
		l.c.pullCursor(r)
	}
	ctx, cancel := context.WithTimeout(l.bg, l.opts.requestTimeout())
	defer cancel()
	ci := int(uint64(r) / l.chunk)
	lo, _ := l.c.chunkWords(ci)
	self := l.opts.Node
	for attempt := 0; attempt < 64; attempt++ {
		words, mod := l.c.syncChunk(ci)
		j, m := int(uint64(r)/64)-lo, uint64(1)<<(uint64(r)%64)
		was := words[j]&m != 0
		var ops []clientv3.Op
		if was != inSync {
			words[j] ^= m
			ops = append(ops, clientv3.OpPut(l.k.sync(ci), string(encodeChunk(words, l.c.chunkBits(ci)))))
		}
		if holder, ok := l.c.claimHolder(r); ok && holder == self {
			ops = append(ops, clientv3.OpDelete(l.k.claim(r)))
		}
		if inSync && l.c.hasPrio(r) {
			ops = append(ops, clientv3.OpDelete(l.k.prio(r)))
		}
		if len(ops) == 0 {
			return
		}
		resp, err := l.cli.Txn(ctx).If(
			l.aliveCmp(),
			clientv3.Compare(clientv3.ModRevision(l.k.sync(ci)), "=", mod),
		).Then(ops...).Else(clientv3.OpGet(l.k.node(self))).Commit()
		if err != nil {
			return
		}
		if !resp.Succeeded {
			if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 0 || kvs[0].CreateRevision != l.joinRev.Load() {
				l.fence()
				return
			}
		}
		if err := l.barrier(ctx, resp.Header.Revision); err != nil || resp.Succeeded {
			return
		}
	}
}

// RemoteRecovering reports whether r is out of sync, so a write to it
// must wait until it has been resynced (cmirrord's rule: true for any
// out-of-sync region, not only the one being copied). When it is, r is
// also queued as a priority request, so the recoverer takes it next.
// With a context that may block, the answer is checked against a
// linearizable read of r's sync chunk; with dirtylog.NonBlocking it comes
// from the cache. A suspended log answers false.
func (l *Log) RemoteRecovering(ctx context.Context, r dirtylog.Region) (bool, error) {
	if err := l.check(r); err != nil {
		return false, err
	}
	if l.closed.Load() {
		return false, fmt.Errorf("etcdlog: remote recovering: %w", dirtylog.ErrClosed)
	}
	if l.suspended.Load() {
		return false, nil
	}
	out := !l.c.inSync(r)
	if dirtylog.MayBlock(ctx) {
		ci := int(uint64(r) / l.chunk)
		resp, err := l.cli.Get(ctx, l.k.sync(ci))
		if err != nil {
			return false, fmt.Errorf("etcdlog: remote recovering %d: %w", r, err)
		}
		if len(resp.Kvs) == 1 {
			if _, mod := l.c.syncChunk(ci); resp.Kvs[0].ModRevision != mod {
				lo, hi := l.c.chunkWords(ci)
				words := make([]uint64, hi-lo)
				if err := decodeChunk(resp.Kvs[0].Value, l.c.chunkBits(ci), words); err != nil {
					return false, fmt.Errorf("etcdlog: remote recovering %d: %w", r, err)
				}
				out = words[int(uint64(r)/64)-lo]&(1<<(uint64(r)%64)) == 0
			}
		}
	}
	if out {
		l.requestPriority(r)
	}
	return out, nil
}

// requestPriority queues r for prioLoop unless it is already requested.
func (l *Log) requestPriority(r dirtylog.Region) {
	if l.c.hasPrio(r) {
		return
	}
	l.prioMu.Lock()
	defer l.prioMu.Unlock()
	if l.prioQueued[r] {
		return
	}
	select {
	case l.prioCh <- r:
		l.prioQueued[r] = true
	default: // a hint: dropped when the queue is full, asked again later
	}
}

// prioLoop writes priority requests: a key per region, bound to this
// node's lease, so the recoverer takes the regions writers wait on first.
func (l *Log) prioLoop() {
	defer l.wg.Done()
	for {
		select {
		case r := <-l.prioCh:
			sess := l.session()
			if sess != nil && !l.fenced.Load() {
				ctx, cancel := context.WithTimeout(l.bg, l.opts.requestTimeout())
				_, _ = l.cli.Txn(ctx).If(
					l.aliveCmp(),
					clientv3.Compare(clientv3.CreateRevision(l.k.prio(r)), "=", 0),
				).Then(clientv3.OpPut(l.k.prio(r), l.opts.Node, clientv3.WithLease(sess.Lease()))).Commit()
				cancel()
			}
			l.prioMu.Lock()
			delete(l.prioQueued, r)
			l.prioMu.Unlock()
		case <-l.stop:
			return
		}
	}
}
