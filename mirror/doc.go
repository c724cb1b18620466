// Package mirror is RAID1 over io.ReaderAt/io.WriterAt legs with a
// write-intent log (a dirtylog.Log), following the Linux dm-raid1 target:
// its region states, write and read paths, error handling
// (handle_errors, keep_log), status strings and resync — with the
// improvements a production replicated volume expects: group-committed log
// flushes, parallel leg writes, read balancing, rate-limited parallel
// resync with progress, online verify/repair, and leg replacement.
//
// # Model
//
// The device is cut into regions of the log's region size. A region is in
// sync when every leg holds the same data for it. Before a write reaches
// any leg, each in-sync region it touches is marked dirty in the log and
// the mark is made durable (one log flush serves every write that marked
// before it started: group commit; a region already durably marked skips
// the wait). When the last write of a region completes and the region has
// stayed idle for Options.ClearDelay, it is cleared; the disk log's flush
// callback syncs the legs before the clear is written, so after any crash
// every region whose legs may differ is dirty in the log. On reopen those
// regions are out of sync: reads of them go to the default leg (leg 0
// unless it failed over), writes go to the default leg only, and the
// resync worker copies them from the default leg to the others.
//
// Out-of-sync regions are copied in the background by up to
// Options.ResyncParallel workers at Options.ResyncRate bytes per second;
// each region is quiesced (its writes drained, new writes parked) while it
// is copied. Verify compares legs region by region; AddLeg and ReplaceLeg
// bring in new legs that receive writes at once and serve reads once every
// region has been copied to them.
//
// # Concurrency
//
// A *Mirror is safe for concurrent use by any number of goroutines.
// Writes that overlap are applied to every leg in the order they started,
// so in-sync legs stay byte-identical; writes that do not overlap run in
// parallel, and each write goes to all its legs in parallel (legs whose
// writes average under a microsecond, such as memory legs, are written in
// turn on the writer's goroutine instead: a goroutine hand-off would cost
// more than the write). Discard takes
// the same path as a write. The mirror runs two goroutines (the log
// flusher and the resync worker, which starts up to ResyncParallel
// copies); Close stops all of them.
//
// The concurrency model, for readers of the code. The locks, in the order
// they are taken:
//
//  1. Mirror.ops[i] (sync.RWMutex, 64 slots): read-held by every
//     operation for its whole length (a write holds the slot of its first
//     region), so Close, taking every slot exclusively, waits for them.
//  2. resyncState.askMu, then resyncState.mu: the resync worker's
//     bookkeeping (the regions it is copying, rate limiting, back-off).
//     Never held while Mirror.mu or a shard lock is taken.
//  3. The shard locks, shard.mu (64 of them; region r lives in shard
//     r%64): each guards its shard's region table (map and free list,
//     every field of every region entry), its inflight list of write
//     tickets, its idle-dirty count, its ticket counter and its write
//     counters. A write locks the shards of its regions in ascending
//     order. Mirror.mu is every shard lock, taken in the same order, so it
//     excludes every write's critical section; the slow paths hold it
//     (the flusher, resync, verify, joins, leg changes, waits on
//     Mirror.cond). Mirror state written only under Mirror.mu (flush
//     generations, logFailure, inSync, held, clearEpoch, syncEpoch,
//     stopFlusher, joinCursor, locked, legState.joinLeft) may therefore be read
//     under any one shard lock: that is what the write path's fast path
//     does.
//  4. LegsSyncer.mu, and the log's own locks: leaves; the log is called
//     with shard locks held only for its non-blocking methods (MarkRegion,
//     ClearRegion, InSync with dirtylog.NonBlocking).
//
// Atomics, and why they are not under a lock: Mirror.cfg (the leg set,
// loaded on every read and write; replaced under Mirror.mu); Mirror.closed
// (checked by every operation before it enters); Mirror.waiters (a waker
// holding one shard lock broadcasts only if someone waits on
// Mirror.cond); Mirror.clearArmed (a completing write, holding one shard,
// kicks the flusher only if its clear timer is off); Mirror.rr (the read
// cursor); every counter in Mirror.stats; legState's error bits, error
// count, joining flag and reads in flight (read by every I/O, changed by
// failures); ticket.done (found by waiters under different shards of one
// ticket, closed by its dropper holding all of them).
//
// A write (writeOp, write.go) runs: count (count.go: under its shards, the
// pending counts go up, in-sync regions are marked, an order ticket is
// taken; the fast path ends here if the marks are already durable) →
// wait for the flush (admit, under Mirror.mu, only when a new mark is not
// yet durable or error handling may hold the write) → wait for earlier
// overlapping tickets → issue to legs (issue.go, startLegs: where the leg
// writes start) → complete (under its shards again: counts and ticket
// dropped).
//
// The invariants, which the crash matrix (crash_test.go, random workloads,
// power cuts of the legs and log device, reopen, resync, compare) and the
// fault matrix (fault_test.go, faultmatrix_test.go) check:
//
//   - a region's mark is durable in the log before any leg sees a write to
//     it (countLocked marks, waitFlushLocked returns, then startLegs);
//   - overlapping writes reach every leg in the order they took their
//     tickets (an earlier overlapping ticket is always waited for);
//   - a region is cleared only after every write to it completed on every
//     leg (its pending count is zero) and, for a persistent log, after
//     the legs were synced (the log's flush callback runs before the clear
//     is written);
//   - so after any crash the legs agree on every region the log says is in
//     sync, and every acknowledged write that a completed Sync (or
//     WriteAtFUA) covered is on every leg after the resync.
//
// # Durability
//
// A write is acknowledged when the legs' WriteAt calls return;
// WriteAtFUA also syncs each leg it wrote before it returns. Sync makes
// every acknowledged write durable on every leg that has Sync. Nothing
// acknowledged before a completed Sync is lost by a crash of the legs and
// the log device at any moment: after reopening and resyncing, the legs
// are identical and hold it.
//
// # Differences from dm-raid1
//
// Where the kernel can lose an acknowledged write, the mirror is stricter:
//
//   - A write is acknowledged only if the default leg (the source of every
//     out-of-sync region's reads and resync) holds it; the kernel completes
//     a write that failed on the default leg but reached another. A failed
//     default leg hands over to a healthy leg whenever the mirror is in
//     sync (or KeepLog is set), with or without HandleErrors (the kernel
//     hands over only with handle_errors), so a write that reached the new
//     default leg is acknowledged.
//   - Leg failures are always reported to Options.OnEvent (the kernel
//     raises its dm event only with handle_errors).
//   - A write whose log flush failed is never issued and fails with
//     ErrLogFailed (the kernel issues it unless handle_errors is set).
//   - A leg write error always takes the region out of sync, even after a
//     log failure.
//   - A failed resync copy leaves the region out of sync and is retried
//     after a back-off (the kernel, without handle_errors, marks it in
//     sync); the kernel's cursor would not revisit it until a resume.
//   - Writes held under HandleErrors are released by ReplaceLeg (they
//     complete) or Close (they fail), as a table reload or suspend would.
//   - Discard marks its regions and is ordered with writes like a write
//     (the kernel passes discards through without region accounting),
//     and legs that cannot discard get zeroes, so the legs stay
//     identical.
//
// As in the kernel, leg error states are reset when every region is back
// in sync, a default leg that fails while the mirror is out of sync stays
// the default (without KeepLog: the other legs lack its out-of-sync
// regions), and the sticky log failure stays until the mirror is reopened.
//
// # Safety
//
// dmlog never overwrites bytes it cannot prove are its own unless asked
// to, and a wrong geometry is an error, never a silent resize. For the
// mirror, whose legs are the caller's to give, that means refusing:
//
//	New, OpenDisk, Parse      a leg shorter than the mirror (size learned from
//	                          Size(), a file's length or a block device's end):
//	                          ErrBadLeg naming the leg, its bytes, the bytes needed;
//	                          a device size that does not match the log's regions
//	                          (ErrBadTable); Size 0 never exceeds the shortest leg
//	New, OpenDisk, Parse,     a leg file (*os.File) that another mirror holds:
//	AddLeg, ReplaceLeg        an error wrapping flock.ErrInUse (local logs only:
//	                          a cluster log's nodes share their legs)
//	AddLeg, ReplaceLeg        a new leg shorter than the mirror (ErrBadLeg)
//	Parse, ParseWithOptions   a bad table line (ErrBadTable, the kernel's words)
//	every method after Close  ErrClosed, which wraps os.ErrClosed
//
// # Persistent logs
//
// With a dirtylog.Disk log the log's flush callback must sync the legs.
// Parse and OpenDisk wire it; with New, pass a LegsSyncer both as the
// log's FlushCallback and in Options.Syncer.
package mirror
