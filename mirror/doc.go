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
// parallel, and each write goes to all its legs in parallel. The region
// table is sharded: a write locks only the shards of the regions it
// touches (in ascending order), briefly, and takes the mirror-wide lock
// only when it must wait (a log flush, an earlier overlapping write, a
// region being resynced). Discard takes the same path as a write. The mirror
// runs two goroutines (the log flusher and the resync worker, which starts
// up to ResyncParallel copies); Close stops all of them.
//
// # Durability
//
// A write is acknowledged when the legs' WriteAt calls return. Sync makes
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
// # Persistent logs
//
// With a dirtylog.Disk log the log's flush callback must sync the legs.
// Parse and OpenDisk wire it; with New, pass a LegsSyncer both as the
// log's FlushCallback and in Options.Syncer.
package mirror
