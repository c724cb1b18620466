package mirror

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/dmlog/dmlog/dirtylog"
)

// VerifyResult reports what Verify found (a plain value, safe to share).
type VerifyResult struct {
	// Checked counts the in-sync regions compared.
	Checked uint64
	// OutOfSync counts regions skipped because the log already has them out
	// of sync (resync will copy them).
	OutOfSync uint64
	// Mismatched lists the in-sync regions whose legs differ.
	Mismatched []dirtylog.Region
	// Repaired is true if the mismatched regions were marked out of sync
	// for the resync to copy.
	Repaired bool
	// ReadErrors counts region reads that failed (the leg was failed).
	ReadErrors int
}

// Verify compares the readable legs region by region, as md's check and
// DRBD's verify do: each in-sync region is quiesced (its writes drained,
// new ones held) while every leg's copy is read and compared. With repair,
// mismatched regions are durably marked and set out of sync, so the resync
// copies them from the default leg (md's repair). Verify needs two readable
// legs; with fewer it checks nothing.
func (m *Mirror) Verify(ctx context.Context, repair bool) (VerifyResult, error) {
	var res VerifyResult
	if !m.enter() {
		return res, ErrClosed
	}
	defer m.exit()
	c := m.cfg.Load()
	nlegs := len(c.legs)
	bufs := make([][]byte, nlegs)
	for i := range bufs {
		bufs[i] = make([]byte, m.rsize)
	}
	errs := make([]error, nlegs)
	for r := dirtylog.Region(0); uint64(r) < m.nregions; r++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if !m.regionInSync(r) {
			res.OutOfSync++
			continue
		}
		m.mu.Lock()
		e, err := m.quiesceLocked(ctx, r)
		if err != nil {
			m.mu.Unlock()
			return res, err
		}
		c = m.cfg.Load()
		m.mu.Unlock()
		if !e.inSync {
			m.mu.Lock()
			m.unquiesceLocked(r, e)
			m.mu.Unlock()
			res.OutOfSync++
			continue
		}
		var legs []int
		for i, l := range c.legs {
			if l.readable() && i < nlegs {
				legs = append(legs, i)
			}
		}
		off, n := int64(r)<<m.rshift, m.regionLen(r)
		var wg sync.WaitGroup
		for _, i := range legs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = c.legs[i].dev.ReadAt(bufs[i][:n], off)
			}()
		}
		wg.Wait()
		var ref []byte
		mismatch := false
		compared := 0
		for _, i := range legs {
			if errs[i] != nil {
				res.ReadErrors++
				m.failLeg(c.legs[i], errRead, fmt.Errorf("mirror: verify reading %s at %d: %w", c.legs[i].name, off, errs[i]))
				errs[i] = nil
				continue
			}
			compared++
			if ref == nil {
				ref = bufs[i][:n]
			} else if !bytes.Equal(ref, bufs[i][:n]) {
				mismatch = true
			}
		}
		if compared >= 2 {
			res.Checked++
		}
		m.mu.Lock()
		var ferr error
		if mismatch {
			res.Mismatched = append(res.Mismatched, r)
			if repair {
				// Durably mark before the legs may diverge further.
				m.log.MarkRegion(r)
				ferr = m.flushNowLocked()
				if ferr == nil {
					m.setOutOfSyncLocked(r, e)
				}
			}
		}
		m.unquiesceLocked(r, e)
		m.mu.Unlock()
		if ferr != nil {
			return res, fmt.Errorf("mirror: verify repair of region %d: %w", r, ferr)
		}
	}
	res.Repaired = repair && len(res.Mismatched) > 0
	return res, nil
}
