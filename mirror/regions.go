package mirror

import (
	"context"
	"errors"

	"github.com/dmlog/dmlog/dirtylog"
)

// region is the mirror's in-memory view of one region that is in use: a
// region is hashed only while a write is in flight on it, it waits to be
// cleared, or recovery, verify or a join copy holds it. Everything else is
// asked of the log. Fields are guarded by Mirror.mu.
type region struct {
	pending  int32  // writes in flight (counted, as the kernel's rh_inc)
	pin      int32  // holders that need the entry kept (mark-then-flush)
	inSync   bool   // the log's sync bit, kept current by our own changes
	dirty    bool   // marked by us and in sync; cleared once idle
	quiesced bool   // held by recovery, verify or a join copy: writes park
	markGen  uint64 // flush generation that makes our mark durable
	idle     uint64 // clear epoch at which pending last reached zero
}

// errRetry tells a caller holding m.mu that it released the lock and must
// start over.
var errRetry = errors.New("mirror: retry")

// lookupLocked returns the entry of r, creating it from the log's state.
// If the log cannot answer without blocking (a remote log), it drops m.mu,
// asks with blocking allowed, retakes the lock and returns errRetry so the
// caller re-validates what it saw.
func (m *Mirror) lookupLocked(r dirtylog.Region) (*region, error) {
	if e := m.regions[r]; e != nil {
		return e, nil
	}
	in, err := m.log.InSync(m.nb, r)
	if errors.Is(err, dirtylog.ErrWouldBlock) {
		epoch := m.syncEpoch
		m.mu.Unlock()
		in, err = m.log.InSync(context.Background(), r)
		m.mu.Lock()
		if err != nil {
			in = false // the kernel treats an error as "not in sync"
		}
		if m.regions[r] == nil && m.syncEpoch == epoch {
			m.regions[r] = m.newRegion(in)
		}
		return nil, errRetry
	}
	if err != nil {
		in = false
	}
	e := m.newRegion(in)
	m.regions[r] = e
	return e, nil
}

func (m *Mirror) newRegion(inSync bool) *region {
	var e *region
	if n := len(m.free); n > 0 {
		e = m.free[n-1]
		m.free = m.free[:n-1]
		*e = region{}
	} else {
		e = new(region)
	}
	e.inSync = inSync
	return e
}

// dropIfIdleLocked unhashes e when nothing needs it any more.
func (m *Mirror) dropIfIdleLocked(r dirtylog.Region, e *region) {
	if e.pending == 0 && e.pin == 0 && !e.quiesced && !e.dirty {
		delete(m.regions, r)
		if len(m.free) < 256 {
			m.free = append(m.free, e)
		}
	}
}

// setOutOfSyncLocked records that r's legs may differ. The region must
// already be durably marked in the log (by a write or by markDurable).
func (m *Mirror) setOutOfSyncLocked(r dirtylog.Region, e *region) {
	m.log.SetRegionSync(r, false)
	m.syncEpoch++
	if e != nil {
		if e.dirty && e.pending == 0 {
			m.idleDirty--
		}
		e.dirty = false
		e.inSync = false
	}
	m.inSync = false
	m.kickResync()
}

// quiesce takes r out of service for recovery, verify or a join copy: it
// waits until no other holder has it, stops new writes from starting on it
// and waits for the writes in flight to drain. It returns the entry, still
// hashed, with m.mu held; release with unquiesceLocked.
func (m *Mirror) quiesceLocked(ctx context.Context, r dirtylog.Region) (*region, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, err := m.lookupLocked(r)
		if err == errRetry {
			continue
		}
		if e.quiesced {
			m.cond.Wait()
			continue
		}
		e.quiesced = true
		for e.pending > 0 {
			if err := ctx.Err(); err != nil {
				e.quiesced = false
				m.dropIfIdleLocked(r, e)
				m.cond.Broadcast()
				return nil, err
			}
			m.cond.Wait()
		}
		return e, nil
	}
}

func (m *Mirror) unquiesceLocked(r dirtylog.Region, e *region) {
	e.quiesced = false
	m.dropIfIdleLocked(r, e)
	m.cond.Broadcast()
}
