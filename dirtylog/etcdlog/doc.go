// Package etcdlog is a clustered dirtylog.Log whose state lives in etcd,
// for storage clusters that outgrow one log server: every node of a
// shared mirror opens the same log by name, and the state survives any
// node, and any etcd member short of a quorum.
//
// # Model
//
// The log reproduces the cluster semantics of LVM's cmirrord and of
// dirtylog/remote, with etcd as the agreed order:
//
//   - Marks are per node. MarkRegion and ClearRegion change this node's
//     bitmap in memory; Flush commits every mark and clear made since the
//     last flush in one etcd transaction, whatever their number, guarded by
//     a compare on the node's liveness key. A region marked by two nodes
//     stays dirty until both cleared it. Marks are not bound to a lease:
//     they outlive a crash.
//   - Every node holds a liveness key bound to its lease (Options.LeaseTTL).
//     A node that cannot renew it (crashed, partitioned, paused) loses it,
//     and then its next flush fails with ErrFenced and commits nothing: it
//     must stop writing. Resume rejoins with a new lease.
//   - A janitor, elected among the live nodes with etcd's concurrency
//     primitives, turns the marks of a node whose liveness key vanished
//     into resync work (the regions go out of sync) and deletes them, in
//     one transaction. A node restarted under the same id does the same
//     for itself when it registers.
//   - Recovery: one region is recovered at a time, cluster-wide, as in
//     cmirrord: the recoverer key and the region's claim key are bound to
//     the recovering node's lease, so a dead recoverer's claim frees
//     itself. Until SetRegionSync, asking again returns the same region
//     to the same node and nothing to the others.
//     RemoteRecovering is true for any out-of-sync region, and records a
//     priority request so the recoverer resyncs the regions writers wait
//     on first. SetRegionSync releases the claim.
//   - A region is clean when no node marks it and it is in sync, or has
//     stayed untouched since the log was created out of sync.
//
// # Fencing and outages
//
// Fencing is decided by etcd: a flush (or claim, or set-sync) commits only
// if the node's liveness key is the one it created. When the node's
// keepalive stops (etcd unreachable for a TTL, a member restart), the node
// asks etcd whether its lease survived: if it did, it keeps using it (a
// brief outage or a restart of every member costs nothing); if not, the
// node is fenced (ErrFenced, Status D, an EventLogFailed) until Resume.
// While etcd cannot be reached at all, Flush fails with an error wrapping
// dirtylog.ErrLogFailed, and RemoteRecovering and the blocking queries
// fail too, so a mirror stops issuing writes; a write to a region this
// node had already marked durably may still reach the legs while the
// lease runs out, the window every lease-based fence has.
//
// # Queries and the cache
//
// Each node keeps a local copy of the log's state, fed by a watch on the
// log's prefix and valid at a known revision (Revision). With
// dirtylog.NonBlocking, IsClean, InSync and RemoteRecovering answer from
// that cache without any I/O; with a context that may block they first
// catch up with everything etcd had committed when they were called (a
// linearizable read shared by concurrent callers, then a wait for the
// watch), so what one node's call acknowledged is seen by every other
// node's next call. SyncCount, which takes no context, always catches up
// first (bounded by Options.RequestTimeout). When the watch breaks or falls behind a compaction,
// the cache is rebuilt from a linearizable read.
//
// # Layout
//
// Keys live under Options.Prefix+Name+"/". The meta key records the
// format version (FormatVersion), region size and count; opening with a
// different geometry fails with ErrLayoutMismatch instead of
// reinterpreting the state. Sync bits and each node's marks are stored in
// chunks of 32 Ki to 128 Ki regions (at most 32 chunks), each value in the
// shortest of several encodings (all zeros, all ones, a list of set or
// clear bits, a bitmap), so a 1,048,576-region log costs under a hundred
// keys. Every transaction stays within etcd's default limits (128
// operations, 1.5 MiB) whatever the marks: a flush is at most 64 puts of
// at most 16 KiB each. That caps a log at MaxRegions (4,194,304) regions;
// a larger device needs a larger region size.
//
// # Concurrency
//
// A Log is safe for concurrent use; see the Log type. The etcd client is
// the caller's: close it after the Log.
package etcdlog
