// Package logwrites brings Linux's dm-log-writes to Go: a Recorder that
// wraps a block device and logs every write, discard, flush and mark in the
// kernel's on-disk log format, a reader for such logs (written by the kernel
// or by a Recorder), and Replay, which rebuilds the device as it was at any
// point of the log, with every option of fstests' replay-log.
//
// # Model
//
// A log is a sequence of entries on a separate log device. Block 0 holds the
// super block (magic, version 1, nr_entries, sector size); each entry is a
// 32-byte little-endian header padded to one sector, followed (for writes)
// by the data written. Sectors are counted in the log's sector size.
//
// The Recorder follows the kernel target's ordering rules, which are what
// makes a log useful for crash-consistency testing: entries appear in
// completion order; plain writes and discards are held until the next flush
// and logged, just before the flush entry, when that flush is issued
// (writes completing after the flush was issued wait for the following
// one); FUA writes and marks are logged at once. Every prefix of the log
// that ends at a FLUSH or FUA entry is therefore a state the device could
// have been in after a power cut, and replaying up to a mark gives the
// flushed state at the moment the mark was set.
//
// The count in the super block is rewritten after each FUA or MARK entry and
// at Close, always after the entries it covers have been written. With
// Options.Durable the log device is also synced at every flush, so the log
// read after a crash of the recording program is a clean prefix.
//
// # Reading and replaying
//
// Open validates the super block; Log.Entries validates each entry as
// fstests' replay-log does (all-zero headers, junk after the 32-byte
// header, MARK combined with another flag are malformed, named by their log
// block) and also checks that sizes do not overflow and that each write's
// data is present, so a truncated log or a count beyond the data is an
// error (wrapping ErrTruncated) rather than a short replay. Replay and Find
// take every replay-log option (ReplayOptions) and fix its pitfalls: a
// missing end mark is an error before anything is written, discards always
// zero their range, the sector range filters discards too, and a checker
// fails by error or panic. Without a per-entry action (a checker or a
// progress callback) Replay is last-writer-wins: it reads the headers
// once, keeps which entry last wrote or discarded each byte range, and
// copies only what survives, read straight from the log, in target order;
// the result is the sequential replay's, byte for byte. The command
// examples/replay-log is a drop-in replay-log built on them.
//
// # Crash states
//
// Explore goes beyond prefixes: from a log and the device image the
// recording started from, it generates the states a power cut could have
// left — every prefix at a FLUSH or FUA, plus bounded, seeded subsets and
// reorderings of the writes not yet durable at the cut, optionally torn at
// 512-byte granularity — as copy-on-write overlays over the base image,
// de-duplicated and checked in parallel. A failing State's Description
// replays exactly (ReplayState). The command examples/crashtest uses it to
// crash-test a small key-value store.
//
// # Safety
//
// The package never overwrites or reinterprets bytes it cannot prove are
// its own unless asked to. What each entry point refuses, and why:
//
//   - New refuses a log device that is not blank — its first
//     CheckedLogBytes bytes hold a previous log, a file system or any other
//     data, or it has no ReadAt to check — with ErrLogDeviceNotBlank,
//     writing nothing. Options.Overwrite starts a log over it anyway (the
//     kernel target's rule: it writes its super block over whatever is
//     there). New also refuses a bad sector size (ErrBadSectorSize), a
//     negative LogSize (ErrInvalidArgument) and a log device too small for
//     one entry (ErrLogFull), each naming the value in bytes.
//   - Replay refuses a nil target (ErrNoTarget), a start entry beyond the
//     log and inconsistent checker options (ErrInvalidEntry), and a start or
//     end mark that is not in the log (ErrMarkNotFound) — all before writing
//     anything. A log that turns out truncated or malformed stops the replay
//     at the bad entry (ErrTruncated, ErrMalformed), never a silent short
//     replay. The command examples/replay-log also refuses to grow a target
//     file smaller than the log's device unless --grow is given.
//   - Open refuses anything that is not a version-1 dm-log-writes super
//     block (ErrBadMagic, ErrBadVersion, ErrBadSectorSize).
//   - Recorder.Discard on a device without a Discard method is applied (a
//     punched hole on an *os.File, zeros elsewhere), so the device always
//     equals the replay of its log.
//   - A closed Recorder refuses every operation, and a second Close, with
//     ErrClosed, which wraps os.ErrClosed.
//
// Errors wrap the package's sentinel errors (ErrMalformed, ErrTruncated,
// ErrUnaligned, ErrLoggingDisabled, ...) with context; *EntryError and
// *ReplayError say which entry, at which log block, and how many entries
// had been applied.
//
// # Concurrency
//
// A Recorder is safe for concurrent use by many goroutines. A Log is
// immutable and safe for concurrent use if its io.ReaderAt is. A sequential
// Replay (with a Checker, Progress or ReplayOptions.Sequential) uses its
// arguments from one goroutine; a last-writer-wins Replay makes parallel
// ReadAt calls on the log and parallel WriteAt calls on distinct ranges of
// the target, as the io.ReaderAt and io.WriterAt contracts allow, from
// goroutines that have all returned when Replay does. Replays of the same
// Log onto different targets may run concurrently.
package logwrites
