package mirror

import (
	"context"
	"errors"
	"fmt"

	"github.com/dmlog/dmlog/dirtylog"
)

// ReadAt reads len(p) bytes at off. A region in sync is read from a
// healthy leg chosen by Options.ReadPolicy; a region out of sync only from
// the default leg (the only one known to hold its latest data). A read
// error fails the leg (status R) and the read is retried on another in-sync
// leg; with ReadRepair the bad leg's range is rewritten from the good data
// instead. ReadAt returns ErrIO when no leg can serve the read.
func (m *Mirror) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > m.size {
		return 0, fmt.Errorf("%w: offset %d size %d", ErrRange, off, m.size)
	}
	want := len(p)
	var eof error
	if int64(want) > m.size-off {
		want = int(m.size - off)
		eof = errEOF
	}
	if want == 0 {
		return 0, eof
	}
	if !m.enterSlot(m.slot(m.regionOf(off))) {
		return 0, ErrClosed
	}
	defer m.exitSlot(m.slot(m.regionOf(off)))
	m.stats.reads.Add(1)
	p = p[:want]
	// Split at regions whose sync state differs.
	done := 0
	for done < want {
		o := off + int64(done)
		r := m.regionOf(o)
		in := m.regionInSync(r)
		end := min(int64(r+1)<<m.rshift, off+int64(want))
		for end < off+int64(want) && m.regionInSync(m.regionOf(end)) == in {
			end = min(end+m.rsize, off+int64(want))
		}
		n := int(end - o)
		if err := m.readSpan(p[done:done+n], o, in); err != nil {
			return done, err
		}
		done += n
	}
	m.stats.bytesRead.Add(int64(want))
	return want, eof
}

// regionInSync asks the log, without blocking if it can; a would-block
// answer (remote logs) is asked again with blocking allowed.
func (m *Mirror) regionInSync(r dirtylog.Region) bool {
	in, err := m.log.InSync(m.nb, r)
	if errors.Is(err, dirtylog.ErrWouldBlock) {
		in, err = m.log.InSync(context.Background(), r)
	}
	return err == nil && in
}

// readSpan reads one run of regions with the same sync state.
func (m *Mirror) readSpan(p []byte, off int64, inSync bool) error {
	c := m.cfg.Load()
	if !inSync {
		l := c.legs[c.def]
		if l.failed() {
			return fmt.Errorf("%w: region out of sync and default leg %s failed", ErrIO, l.name)
		}
		if _, err := l.dev.ReadAt(p, off); err != nil {
			m.stats.readErrors.Add(1)
			err = fmt.Errorf("mirror: reading %s at %d: %w", l.name, off, err)
			m.failLeg(l, errRead, err)
			return fmt.Errorf("%w: %w", ErrIO, err)
		}
		return nil
	}
	tried := 0 // bitmask of legs tried
	var bad []*legState
	var lastErr error
	for {
		i := m.chooseLeg(c, tried)
		if i < 0 {
			if lastErr == nil {
				lastErr = errors.New("no healthy leg")
			}
			return fmt.Errorf("%w: %w", ErrIO, lastErr)
		}
		tried |= 1 << i
		l := c.legs[i]
		l.readsInFly.Add(1)
		_, err := l.dev.ReadAt(p, off)
		l.readsInFly.Add(-1)
		if err == nil {
			for _, b := range bad {
				m.repair(c, b, p, off)
			}
			return nil
		}
		m.stats.readErrors.Add(1)
		lastErr = fmt.Errorf("mirror: reading %s at %d: %w", l.name, off, err)
		if m.opts.ReadRepair {
			bad = append(bad, l)
		} else {
			m.failLeg(l, errRead, lastErr)
		}
	}
}

// chooseLeg picks a readable leg not in tried by the read policy, or -1.
func (m *Mirror) chooseLeg(c *config, tried int) int {
	n := len(c.legs)
	ok := func(i int) bool { return tried&(1<<i) == 0 && c.legs[i].readable() }
	switch m.opts.ReadPolicy {
	case DefaultLeg:
		// The kernel's choose_mirror: the default leg, else walk backwards.
		for k := 0; k < n; k++ {
			i := ((c.def-k)%n + n) % n
			if ok(i) {
				return i
			}
		}
		return -1
	case LeastPending:
		best, bestN := -1, int64(0)
		for k := 0; k < n; k++ {
			i := (c.def + k) % n
			if !ok(i) {
				continue
			}
			if q := c.legs[i].readsInFly.Load(); best < 0 || q < bestN {
				best, bestN = i, q
			}
		}
		return best
	}
	start := int(m.rr.Add(1) % uint64(n))
	for k := 0; k < n; k++ {
		if i := (start + k) % n; ok(i) {
			return i
		}
	}
	return -1
}

// repair rewrites bad's range with good data, ordered with writes as a
// write would be (it waits for earlier overlapping writes and re-reads the
// good data under that order). If the rewrite fails the leg is failed.
func (m *Mirror) repair(c *config, bad *legState, good []byte, off int64) {
	hi := off + int64(len(good))
	m.mu.Lock()
	w := &ticket{}
	m.takeTicketLocked(w, off, hi)
	for m.overlapsEarlierLocked(w) {
		m.wait()
	}
	m.mu.Unlock()
	buf := make([]byte, len(good))
	var err error
	src := -1
	for i, l := range c.legs {
		if l != bad && l.readable() {
			src = i
			break
		}
	}
	if src < 0 {
		err = errors.New("no good leg to repair from")
	} else if _, err = c.legs[src].dev.ReadAt(buf, off); err == nil {
		_, err = bad.dev.WriteAt(buf, off)
	}
	m.mu.Lock()
	m.dropTicketLocked(w)
	m.cond.Broadcast()
	m.mu.Unlock()
	if err != nil {
		m.failLeg(bad, errRead, fmt.Errorf("mirror: read repair of %s at %d: %w", bad.name, off, err))
		return
	}
	m.stats.readRepairs.Add(1)
}
