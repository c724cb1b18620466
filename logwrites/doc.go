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
// fails by error or panic. The command examples/replay-log is a drop-in
// replay-log built on them.
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
// Errors wrap the package's sentinel errors (ErrMalformed, ErrTruncated,
// ErrUnaligned, ErrLoggingDisabled, ...) with context; *EntryError and
// *ReplayError say which entry, at which log block, and how many entries
// had been applied.
//
// # Concurrency
//
// A Recorder is safe for concurrent use by many goroutines. A Log is
// immutable and safe for concurrent use if its io.ReaderAt is. Replay uses
// its arguments from one goroutine and may run concurrently with other
// replays of the same Log onto other targets.
package logwrites
