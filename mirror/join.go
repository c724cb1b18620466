package mirror

import (
	"fmt"

	"github.com/bits-and-blooms/bitset"
)

// Namer is an optional Leg method: AddLeg and ReplaceLeg take the new
// leg's name in Status and Table from it. Name is called once, when the
// leg is added.
type Namer interface{ Name() string }

// AddLeg adds a leg to the mirror. The new leg receives every write to an
// in-sync region at once and serves no reads until the resync worker has
// copied every region to it (Stats().Legs[i].Joining turns false, and
// EventLegJoined is raised). Join progress is kept in memory only: if the
// mirror stops before the leg has joined, reopen without it and add it
// again. It fails with ErrBadLeg beyond MaxLegs legs, or if the leg's size
// can be learned and is less than the mirror's; an *os.File leg is locked
// as New locks its legs.
func (m *Mirror) AddLeg(leg Leg) error {
	if leg == nil {
		return fmt.Errorf("%w: nil leg", ErrBadLeg)
	}
	if !m.enter() {
		return ErrClosed
	}
	defer m.exit()
	f, err := m.admitLeg(leg, len(m.cfg.Load().legs))
	if err != nil {
		return err
	}
	m.mu.Lock()
	c := m.cfg.Load()
	if len(c.legs) >= MaxLegs {
		m.keepLocksLocked(f) // f is no leg: unlocked, unless another leg uses it
		m.mu.Unlock()
		return fmt.Errorf("%w: a mirror has at most %d legs", ErrBadLeg, MaxLegs)
	}
	l := m.joiningLeg(leg, len(c.legs), nil)
	legs := append(append([]*legState(nil), c.legs...), l)
	m.cfg.Store(&config{legs: legs, def: c.def})
	m.keepLocksLocked(f)
	m.joinCursor = 0
	m.cond.Broadcast()
	m.mu.Unlock()
	m.resetBackoff()
	return nil
}

// ReplaceLeg puts leg in place of leg i (a failed leg, say): the old leg
// gets no more I/O once ReplaceLeg returns (writes in flight to it are
// waited for), and the new one joins as with AddLeg. Writes held after a
// leg failure (HandleErrors) are released and complete successfully: their
// data is on the surviving legs and will be copied to the new one.
// Replacing the default leg first hands the default over to a readable
// leg; it fails with ErrBadLeg if there is none. The new leg is checked
// and locked as with AddLeg; the old leg's file, if New or a leg change
// locked it, is unlocked.
func (m *Mirror) ReplaceLeg(i int, leg Leg) error {
	if leg == nil {
		return fmt.Errorf("%w: nil leg", ErrBadLeg)
	}
	if !m.enter() {
		return ErrClosed
	}
	defer m.exit()
	if n := len(m.cfg.Load().legs); i < 0 || i >= n {
		return fmt.Errorf("%w: leg %d of %d", ErrBadLeg, i, n)
	}
	f, err := m.admitLeg(leg, i)
	if err != nil {
		return err
	}
	m.mu.Lock()
	c := m.cfg.Load()
	if i >= len(c.legs) {
		m.keepLocksLocked(f)
		m.mu.Unlock()
		return fmt.Errorf("%w: leg %d of %d", ErrBadLeg, i, len(c.legs))
	}
	def := c.def
	if i == def {
		def = -1
		for j, l := range c.legs {
			if j != i && l.readable() {
				def = j
				break
			}
		}
		if def < 0 {
			m.keepLocksLocked(f)
			m.mu.Unlock()
			return fmt.Errorf("%w: cannot replace default leg %d: no other leg holds every region", ErrBadLeg, i)
		}
	}
	old := c.legs[i]
	l := m.joiningLeg(leg, i, old)
	legs := append([]*legState(nil), c.legs...)
	legs[i] = l
	m.cfg.Store(&config{legs: legs, def: def})
	m.joinCursor = 0
	m.releaseHeldLocked()
	// Wait for writes that may still use the old leg.
	var last [nShards]uint64
	for i := range m.shards {
		last[i] = m.shards[i].seq
	}
	for m.inflightUpToLocked(&last) {
		m.wait()
	}
	m.keepLocksLocked(f) // and the old leg's file is unlocked if no leg uses it
	m.cond.Broadcast()
	m.mu.Unlock()
	m.resetBackoff()
	if def != c.def {
		m.event(Event{Kind: EventDefaultChanged, Leg: def})
	}
	return nil
}

// inflightUpToLocked reports whether a write that took its ticket by the
// time of last (each shard's seq) is still in flight.
func (m *Mirror) inflightUpToLocked(last *[nShards]uint64) bool {
	for i := range m.shards {
		for _, w := range m.shards[i].inflight {
			if m.home(w.mask) == &m.shards[i] && w.seq <= last[i] {
				return true
			}
		}
	}
	return false
}

func (m *Mirror) joiningLeg(leg Leg, i int, old *legState) *legState {
	l := m.newLeg(leg, i)
	if old != nil {
		l.name, l.off = old.name, old.off
	}
	if n, ok := leg.(Namer); ok && n.Name() != "" {
		l.name = n.Name()
	}
	l.joining.Store(true)
	l.joinLeft = bitset.New(uint(m.nregions)).FlipRange(0, uint(m.nregions))
	l.joinRemaining = int64(m.nregions)
	return l
}
