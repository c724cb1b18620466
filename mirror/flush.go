package mirror

import (
	"context"
	"fmt"
	"time"
)

// Group commit. Writers mark their regions under their shard locks and record the flush
// generation that will cover the marks (flushStarted+1); the flusher
// goroutine runs one log Flush for every writer that marked before it
// started, then wakes them all with its result. Clears are deferred: a
// region whose last write completed stays marked for ClearDelay, then the
// flusher clears it in memory and flushes; the disk log's flush callback
// syncs the legs before the clean bit is written, so a clean bit on disk
// never runs ahead of the data. Because that sync can be long (a leg with
// much unwritten data) and slows the writes under it, a clear pass is put
// off while the mirror is being written, for at most maxClearDefers passes.

func (m *Mirror) kick() {
	select {
	case m.flushKick <- struct{}{}:
	default:
	}
}

// waitFlushLocked waits until a flush that started after generation
// need-1 completed. It returns an error wrapping ErrLogFailed if every such
// flush failed.
func (m *Mirror) waitFlushLocked(need uint64) error {
	if need <= m.okGen {
		m.stats.flushSkips.Add(1)
		return nil
	}
	m.stats.flushWaits.Add(1)
	if need > m.flushWant {
		m.flushWant = need
	}
	m.kick()
	for m.flushDone < need && !m.stopFlusher {
		m.wait()
	}
	if m.okGen >= need {
		return nil
	}
	return fmt.Errorf("%w: the log flush covering this write failed", ErrLogFailed)
}

// applyClearsLocked clears the regions that have been idle for a whole
// clear interval (all of them if all) and reports how many it cleared.
func (m *Mirror) applyClearsLocked(all bool) int {
	if m.idleDirtyLocked() == 0 {
		return 0
	}
	m.clearEpoch++
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		if sh.idleDirty == 0 {
			continue
		}
		for r, e := range sh.regions {
			if !e.dirty || e.pending > 0 || e.pin > 0 || e.quiesced {
				continue
			}
			if !all && e.idle+2 > m.clearEpoch {
				continue
			}
			m.log.ClearRegion(r)
			e.dirty = false
			sh.idleDirty--
			n++
			m.dropIfIdleLocked(r, e)
		}
	}
	return n
}

// maxClearDefers bounds how many clear ticks in a row the flusher puts
// off while writers wait for a flush: under a steady stream of writes into
// new regions an idle region is still cleared within about
// (maxClearDefers+2) clear delays.
const maxClearDefers = 8

// flusher is the one goroutine that calls the log's Flush while the mirror
// runs.
func (m *Mirror) flusher() {
	defer m.wg.Done()
	delay := m.opts.clearDelay()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	deferred := 0         // consecutive clear ticks put off while writers marked
	var lastTick activity // at the previous clear tick
	for {
		tick := false
		select {
		case <-m.flushKick:
		case <-timer.C:
			armed = false
			m.clearArmed.Store(false)
			tick = true
		}
		m.mu.Lock()
		if m.stopFlusher {
			m.flushDone = m.flushStarted
			m.cond.Broadcast()
			m.mu.Unlock()
			timer.Stop()
			return
		}
		cleared := 0
		switch {
		case delay == 0:
			cleared = m.applyClearsLocked(true)
		case tick && m.busyLocked(lastTick) && deferred < maxClearDefers:
			// The mirror is being written: a clear now would sync the
			// legs (the disk log's flush callback, before a clean bit)
			// under its writes, and make the next writer's mark flush
			// wait for that sync. Put it off to a quiet tick, for at
			// most maxClearDefers ticks, as md's bitmap daemon clears
			// when the array is idle.
			deferred++
			m.clearEpoch++ // a clear interval passed: idle regions age
			m.stats.clearDefers.Add(1)
		case tick:
			deferred = 0
			cleared = m.applyClearsLocked(false)
		}
		if tick {
			lastTick = m.activityLocked()
		}
		if !armed && delay > 0 && m.idleDirtyLocked() > 0 {
			timer.Reset(delay)
			armed = true
			m.clearArmed.Store(true)
		}
		if m.flushWant <= m.flushDone && cleared == 0 {
			m.mu.Unlock()
			continue
		}
		gen := m.flushStarted + 1
		m.flushStarted = gen
		m.mu.Unlock()

		err := m.log.Flush(context.Background())
		m.stats.flushes.Add(1)

		m.mu.Lock()
		if err != nil {
			m.logFailure = true
			first := !m.logEventSent
			m.logEventSent = true
			if first {
				// Report before waking the writers that will fail.
				m.mu.Unlock()
				m.event(Event{Kind: EventLogFailed, Leg: -1, Err: err})
				m.mu.Lock()
			}
		} else {
			m.okGen = gen
		}
		m.flushDone = gen
		m.cond.Broadcast()
		again := m.flushWant > m.flushDone
		m.mu.Unlock()
		if again {
			m.kick()
		}
	}
}

// activity is what the flusher compares between clear ticks to tell a
// busy mirror from a quiet one.
type activity struct {
	flushes          uint64 // flushStarted
	writes, discards int64  // summed over the shards
}

// activityLocked reads the mirror's activity (under mu, which holds every
// shard).
func (m *Mirror) activityLocked() activity {
	a := activity{flushes: m.flushStarted}
	for i := range m.shards {
		a.writes += m.shards[i].writes
		a.discards += m.shards[i].discards
	}
	return a
}

// busyLocked reports whether the mirror was written since the clear tick
// that recorded since, or writers wait for a flush.
func (m *Mirror) busyLocked(since activity) bool {
	return m.activityLocked() != since || m.flushWant > m.flushDone
}

// flushNow runs a flush that covers everything marked so far and waits
// for it.
func (m *Mirror) flushNowLocked() error {
	return m.waitFlushLocked(m.flushStarted + 1)
}
