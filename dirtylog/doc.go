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
// # Safety
//
// dmlog never overwrites, deletes or reinterprets bytes that it cannot
// prove are its own unless the caller asked for it explicitly, and a wrong
// geometry is an error, never a silent resize. Where the kernel is more
// trusting, an option gives its rule. What each entry point refuses:
//
//	entry point         refuses                                    error                 unless
//	OpenDisk, New       a device whose first DiskLogSize bytes     ErrNotLog             Options.Format
//	("disk")            are neither a dm disk log nor all zeroes
//	                    (a file system, a disk image, any data)
//	                    a dm disk log of another version           ErrBadVersion         Options.Format
//	                    a device it cannot read at open            ErrLogFailed          Options.Format
//	                    a log of another region count than         ErrGeometry           Options.Resize
//	                    DeviceSize/RegionSize give
//	                    a device smaller than DiskLogSize that     ErrLogDeviceTooSmall  -
//	                    is not a regular file (files grow)
//	                    an *os.File another Disk or process has    ErrInUse              -
//	                    open as a log (flock)
//	NewCore, OpenDisk   a missing or invalid DeviceSize,           ErrBadOptions,        -
//	                    RegionSize or LogicalBlockSize             ErrBadRegionSize
//	Disk.Resume         a device overwritten since it was opened   ErrNotLog, ...        Options.Format
//
// Why: the kernel starts a new log over a header without its magic, so a
// data file or a file system given as the log device by mistake (ext4's
// superblock sits at byte 1024, where the bitmap goes) would be
// overwritten; OpenDisk refuses it and writes nothing (with Format it
// does as the kernel). The v2 header records the region count but not the
// region size, so a reopen with another RegionSize looks exactly like a
// resize and would put every dirty bit on the wrong region, leaving a
// crashed region unrepaired; OpenDisk refuses it (with Resize it applies
// the kernel's grow and shrink rules: new regions dirty, or clean under
// NoSync; dropped regions forgotten). These checks run in every sync mode.
// A second opener of the same log would interleave two bitmaps on one
// device, so OpenDisk claims an *os.File exclusively, as the kernel claims
// its devices; Close (or closing the file, or the process ending) releases
// it. An empty or short regular file is grown to DiskLogSize, which users
// can call to size log devices themselves; anything else too small is an
// error naming the bytes it has and the bytes it needs.
//
// Every size in Options and Env is in bytes; the table words New parses
// and the strings Status and Table print are in 512-byte sectors, as the
// kernel's.
//
// Every Log in this package is safe for concurrent use.
package dirtylog
