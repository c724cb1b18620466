// Package dirtylog is the dirty-region log of Linux device-mapper for Go:
// a record of which fixed-size regions of a device may differ between the
// copies of a mirror, so that after a crash only those regions are
// resynchronised rather than the whole device.
//
// # Marks, clears and flush
//
// A device is cut into regions of RegionSize bytes. Before writing to a
// region, a mirror calls MarkRegion; once the write has reached every copy
// it calls ClearRegion. Both change memory only: they never block, never
// allocate and never fail. Flush makes the marks durable: when it returns
// nil, every region marked before the call is recorded as dirty on stable
// storage, so a crash cannot forget that the region's copies may differ.
// A mirror therefore flushes before it lets any write reach a leg. Clears
// may be lazy: losing a clear only costs an extra resync of that region.
// A persistent log calls its flush callback (Options.FlushCallback) before
// writing clears, so the legs' data is durable before its region is clean.
//
// # Sync state and resync
//
// Separately from clean/dirty, each region is in sync (every copy holds the
// same data) or not. At start-up a persistent log turns the regions that
// were dirty into out-of-sync regions. ResyncWork hands them out one at a
// time to a recoverer, which copies the region between legs and reports
// the result with SetRegionSync; SyncCount tracks progress. Start-up modes
// follow the kernel: DefaultSync trusts the persistent state, ForceSync
// resyncs everything, NoSync trusts everything.
//
// # Log types
//
// Core keeps the state in memory; Disk keeps the clean bitmap on a device in
// the kernel's own v2 format (ReadDiskImage and EncodeDiskImage expose it),
// byte-compatible with logs written by dm-mirror. The remote sub-package
// shares one log between several nodes through a server. New builds any
// registered type from the kernel's table words, e.g.
// New("disk", []string{"253:2", "1024", "nosync"}, env).
//
// Where the kernel has known flaws, these logs fix them and keep the
// on-disk bytes identical: a region set in sync twice is counted once; a
// region that goes out of sync behind the resync cursor is still handed
// out; a disk flush writes only the bitmap blocks that changed.
//
// Every Log in this package is safe for concurrent use.
package dirtylog
