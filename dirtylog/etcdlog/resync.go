package etcdlog

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dmlog/dmlog/dirtylog"
)

// ResyncWork claims an out-of-sync region for this node to recover.
//
// One region is recovered at a time, cluster-wide, as in cmirrord: the
// recoverer key, bound to the node's lease, names the recovering node, and
// a claim key, bound to the same lease, names the region. Until
// SetRegionSync ends its recovery, this node gets that same region each
// time it asks (so an abandoned call loses nothing) and other nodes get no
// work. A region some writer waits on (see RemoteRecovering) is taken
// first, oldest request first, then the next one at or after this node's
// resync cursor. A claim is created only if no node holds one and the
// region is still out of sync; SetRegionSync releases it, and the lease
// releases it (and the recoverer role) if the node dies. ok is false when
// nothing is left to claim, another node is the recoverer, or the log is
// suspended.
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
	l.resyncMu.Lock()
	defer l.resyncMu.Unlock()
	if err := l.linearize(ctx); err != nil {
		return 0, false, err
	}
	self := l.opts.Node
	skip := map[dirtylog.Region]bool{}
	for attempt := 0; attempt < 64; attempt++ {
		recov, held, mine := l.c.recovery(self)
		if recov != "" && recov != self {
			return 0, false, nil
		}
		if held > 0 && recov == self {
			return mine, true, nil // still ours: the same region again
		}
		cand, ok := l.c.nextCandidate(skip)
		if !ok {
			if recov == self && held == 0 {
				l.resign(ctx)
			}
			return 0, false, nil
		}
		ci := int(uint64(cand.r) / l.chunk)
		lease := l.session().Lease()
		cmps := []clientv3.Cmp{
			l.aliveCmp(),
			clientv3.Compare(clientv3.CreateRevision(l.k.claim(cand.r)), "=", 0),
			clientv3.Compare(clientv3.ModRevision(l.k.sync(ci)), "=", cand.syncMod),
		}
		ops := []clientv3.Op{clientv3.OpPut(l.k.claim(cand.r), self, clientv3.WithLease(lease))}
		if recov == self {
			cmps = append(cmps, clientv3.Compare(clientv3.Value(l.k.recoverer()), "=", self))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(l.k.recoverer()), "=", 0))
			ops = append(ops, clientv3.OpPut(l.k.recoverer(), self, clientv3.WithLease(lease)))
		}
		resp, err := l.cli.Txn(ctx).If(cmps...).Then(ops...).Else(clientv3.OpGet(l.k.node(self))).Commit()
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

// resign gives up the recoverer role (this node holds no claim).
func (l *Log) resign(ctx context.Context) {
	resp, err := l.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.Value(l.k.recoverer()), "=", l.opts.Node),
	).Then(clientv3.OpDelete(l.k.recoverer())).Commit()
	if err == nil {
		_ = l.barrier(ctx, resp.Header.Revision)
	}
}

// SetRegionSync records r's sync state in etcd (a compare-and-swap of its
// sync chunk), ends this node's recovery claim on r (and its recoverer
// role if that was its last claim) and, when r is now in sync, drops the
// requests to resync it first. A region already in the requested state is
// not counted twice. It blocks for about one etcd round trip (bounded by
// Options.RequestTimeout). On failure (this node fenced, etcd unreachable)
// the stored state is left as it was, which is safe: the region is
// resynced again; a fenced node is reported through OnEvent.
func (l *Log) SetRegionSync(r dirtylog.Region, inSync bool) {
	if uint64(r) >= l.count || l.closed.Load() {
		return
	}
	l.resyncMu.Lock()
	defer l.resyncMu.Unlock()
	if !inSync {
		l.c.pullCursor(r)
	}
	ctx, cancel := context.WithTimeout(l.bg, l.opts.requestTimeout())
	defer cancel()
	ci := int(uint64(r) / l.chunk)
	lo, _ := l.c.chunkWords(ci)
	self := l.opts.Node
	j, m := int(uint64(r)/64)-lo, uint64(1)<<(uint64(r)%64)
	for attempt := 0; attempt < 64; attempt++ {
		words, mod := l.c.syncChunk(ci)
		cmps := []clientv3.Cmp{l.aliveCmp(), clientv3.Compare(clientv3.ModRevision(l.k.sync(ci)), "=", mod)}
		var ops []clientv3.Op
		if was := words[j]&m != 0; was != inSync {
			words[j] ^= m
			ops = append(ops, clientv3.OpPut(l.k.sync(ci), string(encodeChunk(words, l.c.chunkBits(ci)))))
		}
		if l.c.isPristine(r) {
			p, pmod := l.c.pristineChunk(ci)
			p[j] &^= m
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(l.k.pristine(ci)), "=", pmod))
			ops = append(ops, clientv3.OpPut(l.k.pristine(ci), string(encodeChunk(p, l.c.chunkBits(ci)))))
		}
		if holder, ok := l.c.claimHolder(r); ok && holder == self {
			ops = append(ops, clientv3.OpDelete(l.k.claim(r)))
			if recov, held, _ := l.c.recovery(self); recov == self && held == 1 {
				ops = append(ops, clientv3.OpDelete(l.k.recoverer()))
			}
		}
		if inSync && l.c.hasPrio(r) {
			ops = append(ops, clientv3.OpDelete(l.k.prio(r)))
		}
		if len(ops) == 0 {
			return
		}
		resp, err := l.cli.Txn(ctx).If(cmps...).Then(ops...).Else(clientv3.OpGet(l.k.node(self))).Commit()
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
// also recorded as a priority request (a key bound to this node's lease),
// so the recoverer takes it next. With a context that may block, the
// answer is linearizable and the request is written before it returns;
// with dirtylog.NonBlocking the answer comes from the cache and the
// request is sent in the background. A suspended log answers false.
func (l *Log) RemoteRecovering(ctx context.Context, r dirtylog.Region) (bool, error) {
	if l.closed.Load() {
		return false, fmt.Errorf("etcdlog: remote recovering: %w", dirtylog.ErrClosed)
	}
	if err := l.query(ctx, r); err != nil {
		return false, err
	}
	if l.suspended.Load() || l.c.inSync(r) {
		return false, nil
	}
	if l.c.hasPrio(r) {
		return true, nil
	}
	if !dirtylog.MayBlock(ctx) {
		l.requestPriority(r)
		return true, nil
	}
	if err := l.putPrio(ctx, r); err != nil {
		return true, err
	}
	return true, nil
}

// putPrio writes r's priority request and waits for the cache to see it.
func (l *Log) putPrio(ctx context.Context, r dirtylog.Region) error {
	sess := l.session()
	if sess == nil || l.fenced.Load() {
		return l.fencedErr("remote recovering")
	}
	resp, err := l.cli.Txn(ctx).If(
		l.aliveCmp(),
		clientv3.Compare(clientv3.CreateRevision(l.k.prio(r)), "=", 0),
	).Then(clientv3.OpPut(l.k.prio(r), l.opts.Node, clientv3.WithLease(sess.Lease()))).Commit()
	if err != nil {
		return fmt.Errorf("etcdlog: priority request for region %d: %w", r, err)
	}
	return l.barrier(ctx, resp.Header.Revision)
}

// requestPriority queues r for prioLoop unless it is already queued.
func (l *Log) requestPriority(r dirtylog.Region) {
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

// prioLoop writes the priority requests queued by non-blocking calls.
func (l *Log) prioLoop() {
	defer l.wg.Done()
	for {
		select {
		case r := <-l.prioCh:
			if !l.c.hasPrio(r) && !l.c.inSync(r) {
				ctx, cancel := context.WithTimeout(l.bg, l.opts.requestTimeout())
				_ = l.putPrio(ctx, r)
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
