package mirror

import (
	"fmt"
	"strings"

	"github.com/dmlog/dmlog/dirtylog"
)

// Status returns the kernel's INFO status line of the target (what
// `dmsetup status` prints after "<start> <len> mirror "), e.g.
//
//	2 253:3 253:4 2048/2048 1 AA 3 disk 253:2 A
//
// legs named by Options.Names (or the table words with Parse), the
// in-sync and total region counts, and one health character per leg: A
// alive, else by priority F (flush error), D (write), S (sync), R (read).
func (m *Mirror) Status() string {
	c := m.cfg.Load()
	var b strings.Builder
	fmt.Fprintf(&b, "%d ", len(c.legs))
	for _, l := range c.legs {
		b.WriteString(l.name)
		b.WriteByte(' ')
	}
	fmt.Fprintf(&b, "%d/%d 1 ", m.log.SyncCount(), m.nregions)
	for _, l := range c.legs {
		b.WriteByte(l.statusChar())
	}
	b.WriteByte(' ')
	b.WriteString(m.log.Status())
	return b.String()
}

// Table returns the kernel's TABLE line of the target (what `dmsetup
// table` prints after "<start> <len> mirror "), e.g.
//
//	core 1 1024 2 253:3 0 253:4 0 1 handle_errors
//
// Leg offsets are printed in 512-byte sectors.
func (m *Mirror) Table() string {
	c := m.cfg.Load()
	var b strings.Builder
	b.WriteString(m.log.Table())
	fmt.Fprintf(&b, "%d", len(c.legs))
	for _, l := range c.legs {
		fmt.Fprintf(&b, " %s %d", l.name, l.off/dirtylog.SectorSize)
	}
	switch {
	case m.opts.KeepLog:
		b.WriteString(" 2 handle_errors keep_log")
	case m.opts.HandleErrors:
		b.WriteString(" 1 handle_errors")
	}
	return b.String()
}

// LegStats describes one leg (a plain value, part of Stats).
type LegStats struct {
	Name   string // as in Status and Table
	Offset int64  // bytes, as printed (in sectors) by Table
	// Status is the kernel's health character: A, F, D, S or R.
	Status byte
	// Errors counts the errors the leg returned since the mirror was last
	// fully in sync.
	Errors int64
	// Default is true for the leg that serves reads of out-of-sync
	// regions and receives their writes.
	Default bool
	// Joining is true for a leg added by AddLeg or ReplaceLeg that has not
	// yet received every region; it serves no reads.
	Joining bool
	// JoinLeft is the number of regions a joining leg still needs.
	JoinLeft int64
}

// Stats is a snapshot of the mirror's state and counters: a plain value,
// safe to copy and share; it does not change after Stats returns.
type Stats struct {
	Legs       []LegStats // in leg order
	RegionSize int64      // bytes
	Regions    uint64     // total
	InSync     uint64     // regions in sync (the log's SyncCount)
	// Health is the string of leg status characters, e.g. "AD".
	Health string
	// LogStatus is the log's INFO status, e.g. "3 disk 253:2 A".
	LogStatus string
	// HandleErrors and KeepLog are the table's features (Options).
	HandleErrors bool
	KeepLog      bool
	// LogFailed is the kernel's sticky log_failure: a log flush failed
	// since the mirror was last fully in sync.
	LogFailed bool
	// DirtyRegions is the number of regions the mirror holds marked in the
	// log (writes in flight or waiting for their clear).
	DirtyRegions int

	// Reads and Writes count ReadAt and WriteAt calls; BytesRead and
	// BytesWritten the bytes of those that succeeded.
	Reads, Writes, BytesRead, BytesWritten int64
	// LogFlushes counts log flushes; FlushWaits the writes that waited for
	// one (group commit: many writes share a flush); FlushSkips the writes
	// whose regions were already durably marked.
	LogFlushes, FlushWaits, FlushSkips int64
	// ClearDefers counts the clear passes put off because the mirror was
	// being written (see Options.ClearDelay).
	ClearDefers int64
	// ReadErrors and WriteErrors count leg I/O errors; ReadRepairs the
	// ranges rewritten by Options.ReadRepair.
	ReadErrors, WriteErrors, ReadRepairs int64
	// ResyncedRegions and ResyncedBytes count what resync copied;
	// ResyncFailures the region copies that failed.
	ResyncedRegions, ResyncedBytes int64
	ResyncFailures                 int64
	// HeldWrites counts writes held after a leg failure (HandleErrors).
	HeldWrites int64
	// Discards counts Discard calls, BytesDiscarded the bytes of those
	// that succeeded, and DiscardFallbacks the leg Discard calls that
	// failed and were replaced by writes of zeroes.
	Discards, BytesDiscarded, DiscardFallbacks int64
	// Progress is the resync progress, as Mirror.Progress.
	Progress Progress
}

// Stats returns a snapshot of the mirror's state and counters.
func (m *Mirror) Stats() Stats {
	c := m.cfg.Load()
	s := Stats{
		RegionSize:   m.rsize,
		Regions:      m.nregions,
		InSync:       m.log.SyncCount(),
		LogStatus:    m.log.Status(),
		HandleErrors: m.opts.HandleErrors,
		KeepLog:      m.opts.KeepLog,
	}
	var h []byte
	m.mu.Lock()
	for i, l := range c.legs {
		ls := LegStats{Name: l.name, Offset: l.off, Status: l.statusChar(), Errors: l.errCount.Load(),
			Default: i == c.def, Joining: l.joining.Load()}
		if l.joinLeft != nil {
			ls.JoinLeft = l.joinRemaining
		}
		s.Legs = append(s.Legs, ls)
		h = append(h, ls.Status)
	}
	s.LogFailed = m.logFailure
	for i := range m.shards {
		sh := &m.shards[i]
		for _, e := range sh.regions {
			if e.dirty {
				s.DirtyRegions++
			}
		}
		s.Writes += sh.writes
		s.BytesWritten += sh.bytesWritten
		s.Discards += sh.discards
		s.BytesDiscarded += sh.bytesDiscarded
		s.FlushSkips += sh.flushSkips
	}
	m.mu.Unlock()
	s.Health = string(h)
	st := &m.stats
	s.Reads, s.BytesRead = st.reads.Load(), st.bytesRead.Load()
	s.LogFlushes, s.FlushWaits = st.flushes.Load(), st.flushWaits.Load()
	s.FlushSkips += st.flushSkips.Load()
	s.ClearDefers = st.clearDefers.Load()
	s.ReadErrors, s.WriteErrors, s.ReadRepairs = st.readErrors.Load(), st.writeErrors.Load(), st.readRepairs.Load()
	s.ResyncedRegions, s.ResyncedBytes = st.resyncedRegions.Load(), st.resyncedBytes.Load()
	s.ResyncFailures, s.HeldWrites = st.resyncFailures.Load(), st.heldWrites.Load()
	s.DiscardFallbacks = st.discardFallbacks.Load()
	s.Progress = m.Progress()
	return s
}
