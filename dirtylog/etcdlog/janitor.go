package etcdlog

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// reapTxn returns the compares and operations that turn node's marks into
// resync work and delete them: every region the node had marked goes out
// of sync (its legs may differ: the node may have died mid-write), then
// the node's mark keys go. The compares hold only while the node has no
// liveness key, no mark key changed after the cache's revision and the
// sync chunks are as the cache has them; the caller adds its own.
func (l *Log) reapTxn(node string) ([]clientv3.Cmp, []clientv3.Op) {
	plan, rev := l.c.reapPlan(node)
	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(l.k.marks(node)), "<", rev+1).WithPrefix(),
	}
	var ops []clientv3.Op
	for _, rc := range plan {
		changed := false
		for j := range rc.sync {
			if rc.sync[j]&rc.marks[j] != 0 {
				rc.sync[j] &^= rc.marks[j]
				changed = true
			}
		}
		if !changed {
			continue
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(l.k.sync(rc.chunk)), "=", rc.syncMod))
		ops = append(ops, clientv3.OpPut(l.k.sync(rc.chunk), string(encodeChunk(rc.sync, l.c.chunkBits(rc.chunk)))))
	}
	ops = append(ops, clientv3.OpDelete(l.k.marks(node), clientv3.WithPrefix()))
	return cmps, ops
}

// reap turns a dead node's marks into resync work in one transaction,
// retrying (after the cache catches up) while other nodes change the
// chunks it touches.
func (l *Log) reap(ctx context.Context, node string) error {
	for attempt := 0; attempt < 20; attempt++ {
		if _, alive := l.c.alive(node); alive {
			return nil
		}
		cmps, ops := l.reapTxn(node)
		cmps = append(cmps,
			clientv3.Compare(clientv3.CreateRevision(l.k.node(node)), "=", 0),
			l.aliveCmp())
		resp, err := l.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return err
		}
		if err := l.barrier(ctx, resp.Header.Revision); err != nil {
			return err
		}
		if resp.Succeeded {
			return nil
		}
	}
	return nil
}

// janitorLoop campaigns for the janitor role with this node's session;
// once elected, it reaps every node that has marks but no liveness key,
// whenever the cache changes. It ends with the session.
func (l *Log) janitorLoop(sess *concurrency.Session) {
	defer l.wg.Done()
	ctx := sess.Ctx()
	e := concurrency.NewElection(sess, l.k.janitor())
	if err := e.Campaign(ctx, l.opts.Node); err != nil {
		return
	}
	l.janitoring.Store(true)
	defer l.janitoring.Store(false)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		ch := l.c.wait()
		for _, node := range l.c.orphans() {
			if node == l.opts.Node || ctx.Err() != nil {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, l.opts.requestTimeout())
			_ = l.reap(rctx, node) // retried at the next change or tick
			cancel()
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-ctx.Done():
			return
		case <-l.stop:
			return
		}
	}
}
