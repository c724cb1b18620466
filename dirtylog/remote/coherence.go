package remote

import (
	"github.com/bits-and-blooms/bitset"

	"github.com/dmlog/dmlog/dirtylog"
)

// NodeID names a node (a client) of a clustered log. On the wire it is the
// header's luid.
type NodeID = uint64

// cleanChange tells the adapter what a state change did to a region's clean
// bit, so that it can mirror the change into the backing log.
type cleanChange uint8

const (
	cleanSame    cleanChange = iota
	cleanDirtied             // the clean bit went 1 -> 0: MarkRegion the backing log
	cleanCleaned             // the clean bit went 0 -> 1: ClearRegion the backing log
)

// coherence is the cluster state of one log, after cmirrord (reference
// §5): clean and sync bits, which nodes hold a mark on which region, the
// recovery claim, the resync cursor and the priority queue of
// regions someone is waiting to write. It does no I/O and takes no lock:
// the server serialises calls per log and mirrors clean-bit changes
// (returned as cleanChange) into the backing core or disk log.
//
// Invariants kept by every method:
//   - a region some node marks is not clean;
//   - a region that is out of sync is not clean, once anything has touched
//     it (a core log's initial state is "clean but out of sync", as the
//     kernel's; the first mark, clear or set-sync brings it in line);
//   - a region is clean after a clear or a set-in-sync that leaves it with
//     no marks and in sync (cmirrord leaves a resynced region dirty until
//     its next clear; it does not matter for the data but costs a resync
//     after a restart);
//   - at most one region is claimed for recovery, by one node, at a time.
type coherence struct {
	count     uint64
	clean     *bitset.BitSet
	sync      *bitset.BitSet
	syncCount uint64

	nodes   map[NodeID]*nodeMarks
	markers map[dirtylog.Region]uint32 // how many nodes mark a region

	// The recovery claim, as cmirrord's recovering_region and recoverer:
	// one region at a time cluster-wide, claimed by one node.
	claimed   bool
	claim     dirtylog.Region
	recoverer NodeID

	cursor uint64 // next region ResyncWork looks at
	prio   []dirtylog.Region
	inPrio map[dirtylog.Region]bool
}

type nodeMarks struct {
	marks  map[dirtylog.Region]struct{}
	halted bool // presuspended: recovery halted for this node
}

// newCoherence returns the state of a log of count regions whose clean and
// sync bits are read from the backing log by clean and inSync.
func newCoherence(count uint64, clean, inSync func(dirtylog.Region) bool) *coherence {
	c := &coherence{
		count:   count,
		clean:   bitset.New(uint(count)),
		sync:    bitset.New(uint(count)),
		nodes:   map[NodeID]*nodeMarks{},
		markers: map[dirtylog.Region]uint32{},
		inPrio:  map[dirtylog.Region]bool{},
	}
	for r := uint64(0); r < count; r++ {
		if clean(dirtylog.Region(r)) {
			c.clean.Set(uint(r))
		}
		if inSync(dirtylog.Region(r)) {
			c.sync.Set(uint(r))
			c.syncCount++
		}
	}
	return c
}

func (c *coherence) node(n NodeID) *nodeMarks {
	nm := c.nodes[n]
	if nm == nil {
		nm = &nodeMarks{marks: map[dirtylog.Region]struct{}{}}
		c.nodes[n] = nm
	}
	return nm
}

func (c *coherence) inRange(r dirtylog.Region) bool { return uint64(r) < c.count }

// join records node n as a member. A node that joins again (it
// reconnected) keeps its recovery claim: asking for work returns it, so a
// reply lost with the old connection loses nothing.
func (c *coherence) join(n NodeID) { c.node(n) }

// mark records that node n writes r. A node's mark is yes/no: marking
// twice needs one clear. Out-of-range regions are ignored.
func (c *coherence) mark(n NodeID, r dirtylog.Region) cleanChange {
	if !c.inRange(r) {
		return cleanSame
	}
	nm := c.node(n)
	if _, ok := nm.marks[r]; !ok {
		nm.marks[r] = struct{}{}
		c.markers[r]++
	}
	if c.clean.Test(uint(r)) {
		c.clean.Clear(uint(r))
		return cleanDirtied
	}
	return cleanSame
}

// clear removes node n's mark on r. The region becomes clean only if no
// other node marks it and it is in sync.
func (c *coherence) clear(n NodeID, r dirtylog.Region) cleanChange {
	if !c.inRange(r) {
		return cleanSame
	}
	if nm := c.nodes[n]; nm != nil {
		if _, ok := nm.marks[r]; ok {
			delete(nm.marks, r)
			c.dropMarker(r)
		}
	}
	return c.settle(r)
}

func (c *coherence) dropMarker(r dirtylog.Region) {
	if c.markers[r] <= 1 {
		delete(c.markers, r)
	} else {
		c.markers[r]--
	}
}

// settle brings r's clean bit in line with its marks and sync bit.
func (c *coherence) settle(r dirtylog.Region) cleanChange {
	want := c.markers[r] == 0 && c.sync.Test(uint(r))
	has := c.clean.Test(uint(r))
	switch {
	case want && !has:
		c.clean.Set(uint(r))
		return cleanCleaned
	case !want && has:
		c.clean.Clear(uint(r))
		return cleanDirtied
	}
	return cleanSame
}

func (c *coherence) isClean(r dirtylog.Region) bool { return c.clean.Test(uint(r)) }
func (c *coherence) inSync(r dirtylog.Region) bool  { return c.sync.Test(uint(r)) }

// resyncWork hands node n a region to recover, as cmirrord does: one
// region is recovered at a time cluster-wide. While a region is claimed,
// its claimer asking again gets that same region (so a reply lost with a
// connection, or abandoned by the caller, loses nothing) and every other
// node gets nothing. Otherwise a region someone waits to write (the
// priority queue) goes first, then the next out-of-sync region at or after
// the cursor.
func (c *coherence) resyncWork(n NodeID) (dirtylog.Region, bool) {
	if c.claimed {
		if c.recoverer == n {
			return c.claim, true
		}
		return 0, false
	}
	for len(c.prio) > 0 {
		r := c.prio[0]
		c.prio = c.prio[1:]
		delete(c.inPrio, r)
		if !c.sync.Test(uint(r)) {
			return c.take(n, r), true
		}
	}
	if c.cursor >= c.count {
		return 0, false
	}
	next, ok := c.sync.NextClear(uint(c.cursor))
	if !ok || uint64(next) >= c.count {
		c.cursor = c.count
		return 0, false
	}
	c.cursor = uint64(next) + 1
	return c.take(n, dirtylog.Region(next)), true
}

// take claims r for node n.
func (c *coherence) take(n NodeID, r dirtylog.Region) dirtylog.Region {
	c.claimed, c.claim, c.recoverer = true, r, n
	return r
}

// unclaim ends the recovery claim if it is on r.
func (c *coherence) unclaim(r dirtylog.Region) {
	if c.claimed && c.claim == r {
		c.claimed = false
	}
}

// recovering reports whether r is claimed for recovery.
func (c *coherence) recovering(r dirtylog.Region) bool { return c.claimed && c.claim == r }

// setRegionSync records node n's report of r's sync state. It ends r's
// recovery claim; a region counts once however often it is set in sync;
// one that goes out of sync behind the cursor pulls the cursor back. A
// report that r is in sync from a node other than the one now recovering
// it is ignored: it comes from a copy whose claim was released (its node
// suspended, or was declared dead while still running), and the current
// recoverer's copy is still writing the region.
func (c *coherence) setRegionSync(n NodeID, r dirtylog.Region, in bool) cleanChange {
	if !c.inRange(r) {
		return cleanSame
	}
	if in && c.recovering(r) && c.recoverer != n {
		return cleanSame
	}
	c.unclaim(r)
	c.setSyncBit(r, in)
	return c.settle(r)
}

func (c *coherence) setSyncBit(r dirtylog.Region, in bool) {
	was := c.sync.Test(uint(r))
	switch {
	case in && !was:
		c.sync.Set(uint(r))
		c.syncCount++
	case !in && was:
		c.sync.Clear(uint(r))
		c.syncCount--
	}
	if !in && uint64(r) < c.cursor {
		c.cursor = uint64(r)
	}
}

// remoteRecovering reports whether a write by node n to r must wait: true
// for any out-of-sync region (cmirrord). Such a region, unless it is the
// one being copied, jumps the resync queue. hint is the lowest region that
// may still need resync. After n's presuspend it is always false.
func (c *coherence) remoteRecovering(n NodeID, r dirtylog.Region) (rec bool, hint uint64) {
	if nm := c.nodes[n]; nm != nil && nm.halted {
		return false, c.count
	}
	hint = c.count
	if h, ok := c.sync.NextClear(0); ok && uint64(h) < c.count {
		hint = uint64(h)
	}
	if c.sync.Test(uint(r)) {
		return false, hint
	}
	if !c.recovering(r) && !c.inPrio[r] {
		c.prio = append(c.prio, r)
		c.inPrio[r] = true
	}
	return true, hint
}

// presuspend halts recovery for node n.
func (c *coherence) presuspend(n NodeID) { c.node(n).halted = true }

// postsuspend ends node n's recovery claim, as cmirrord resets its
// recoverer when the log is suspended: a suspended node copies nothing,
// and may never come back, so its region goes back to the queue (the
// cursor is pulled back to it).
func (c *coherence) postsuspend(n NodeID) {
	if c.claimed && c.recoverer == n {
		c.claimed = false
		c.cursor = min(c.cursor, uint64(c.claim))
	}
}

// resume restarts the resync cursor and recovery for node n.
func (c *coherence) resume(n NodeID) {
	c.node(n).halted = false
	c.cursor = 0
}

// leave removes node n: the regions it still marks become out of sync
// (its writes to them may not have reached every leg) and a recovery
// claim it held is released. It returns the regions that went out of
// sync. This is both a clean DTR with marks left over and a death.
func (c *coherence) leave(n NodeID) (resync []dirtylog.Region, released bool) {
	var marks map[dirtylog.Region]struct{}
	if nm := c.nodes[n]; nm != nil {
		marks = nm.marks
		delete(c.nodes, n)
	}
	for r := range marks {
		c.dropMarker(r)
		if c.sync.Test(uint(r)) {
			resync = append(resync, r)
		}
		c.setSyncBit(r, false)
		// The region was marked, so its clean bit is already 0.
	}
	if c.claimed && c.recoverer == n {
		c.claimed = false
		if uint64(c.claim) < c.cursor {
			c.cursor = uint64(c.claim)
		}
		released = true
	}
	return resync, released
}
