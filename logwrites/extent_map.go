package logwrites

import (
	"sort"
	"unsafe"
)

// extent is a range of the replay target and where its final contents
// come from: the log bytes from src on, or zeros (src < 0, a discard).
type extent struct {
	start, end int64  // target bytes [start, end)
	src        int64  // log offset of the byte written at start; -1: zeros
	entry      uint64 // the entry that last wrote (or discarded) the range ...
	block      uint64 // ... and the log block of its header
}

// contiguous reports whether b continues a on the target and in the log
// (or both are zeros), so that the two can be one extent.
func (a extent) contiguous(b extent) bool {
	if a.end != b.start {
		return false
	}
	if a.src < 0 || b.src < 0 {
		return a.src < 0 && b.src < 0
	}
	return a.src+(a.end-a.start) == b.src
}

// from returns the part of x from target offset off on (off inside x).
func (x extent) from(off int64) extent {
	if x.src >= 0 {
		x.src += off - x.start
	}
	x.start = off
	return x
}

// extentMap is an interval map of the target: for each byte range written
// by the entries planned so far, the last entry that wrote or discarded it.
// Its extents are disjoint and sorted, kept in chunks of at most
// 2*extentChunk so that an assignment costs O(log n + extentChunk) however
// many extents the map holds; neighbours that continue each other in the
// log are merged, so a log of sequential writes keeps a small map. Not
// safe for concurrent use.
type extentMap struct {
	chunks [][]extent // each sorted and non-empty; chunk i ends before chunk i+1 starts
	n      int        // extents in all chunks
}

const extentChunk = 256

// assign records that x's range now holds x's contents.
func (m *extentMap) assign(x extent) {
	if x.start >= x.end {
		return
	}
	// The first chunk with an extent ending after x.start.
	ci := sort.Search(len(m.chunks), func(i int) bool {
		c := m.chunks[i]
		return c[len(c)-1].end > x.start
	})
	if ci == len(m.chunks) {
		// After every extent.
		if ci > 0 {
			c := m.chunks[ci-1]
			if last := &c[len(c)-1]; last.contiguous(x) {
				last.end = x.end
				return
			}
			if len(c) < 2*extentChunk {
				m.chunks[ci-1] = append(c, x)
				m.n++
				return
			}
		}
		m.chunks = append(m.chunks, []extent{x})
		m.n++
		return
	}
	c := m.chunks[ci]
	i := sort.Search(len(c), func(k int) bool { return c[k].end > x.start })
	// The replacement for the extents x overlaps: what is left of the first
	// before x, x itself, and what is left of the last after x.
	var repl [3]extent
	nr := 0
	if c[i].start < x.start {
		left := c[i]
		left.end = x.start
		repl[nr] = left
		nr++
	}
	repl[nr] = x
	nr++
	// Remove overlapped extents from this chunk and the following ones.
	j := i
	cj := ci
	var right *extent
	for cj < len(m.chunks) {
		cc := m.chunks[cj]
		for j < len(cc) && cc[j].start < x.end {
			if cc[j].end > x.end {
				r := cc[j].from(x.end)
				right = &r
			}
			j++
		}
		if j < len(cc) || cj == len(m.chunks)-1 {
			break
		}
		// This chunk is overlapped to its end: go on with the next one.
		if cj > ci {
			m.n -= len(cc)
			m.chunks[cj] = nil
		}
		if cj == ci {
			// Truncate chunk ci at i below; remember it is done.
			m.n -= len(cc) - i
			m.chunks[ci] = cc[:i]
		}
		cj++
		j = 0
	}
	if right != nil {
		repl[nr] = *right
		nr++
	}
	xi := i // x's index in chunk ci
	if repl[0] != x {
		xi++
	}
	if cj == ci {
		m.n += nr - (j - i)
		m.chunks[ci] = spliceExtents(c, i, j, repl[:nr])
	} else {
		// Chunks ci+1..cj-1 are emptied; ci was cut at i; cj loses [0, j).
		last := m.chunks[cj]
		m.n -= j
		m.chunks[cj] = last[j:]
		m.n += nr
		m.chunks[ci] = append(m.chunks[ci], repl[:nr]...)
	}
	m.mergeAt(ci, xi)
	m.tidy(ci, cj)
}

// mergeAt joins extent k of chunk ci with its neighbours in the chunk where
// they continue each other: only a newly assigned extent can.
func (m *extentMap) mergeAt(ci, k int) {
	c := m.chunks[ci]
	if k+1 < len(c) && c[k].contiguous(c[k+1]) {
		c[k].end = c[k+1].end
		c = append(c[:k+1], c[k+2:]...)
		m.n--
	}
	if k > 0 && c[k-1].contiguous(c[k]) {
		c[k-1].end = c[k].end
		c = append(c[:k], c[k+1:]...)
		m.n--
	}
	clear(c[len(c):cap(c)][:min(2, cap(c)-len(c))])
	m.chunks[ci] = c
}

// spliceExtents replaces c[i:j] with repl.
func spliceExtents(c []extent, i, j int, repl []extent) []extent {
	d := len(repl) - (j - i)
	switch {
	case d > 0:
		c = append(c, repl[:d]...) // grow
		copy(c[j+d:], c[j:len(c)-d])
	case d < 0:
		copy(c[j+d:], c[j:])
		clear(c[len(c)+d:])
		c = c[:len(c)+d]
	}
	copy(c[i:], repl)
	return c
}

// tidy drops the empty chunks in [ci, cj] and splits chunk ci if it grew
// beyond 2*extentChunk.
func (m *extentMap) tidy(ci, cj int) {
	if len(m.chunks[ci]) > 2*extentChunk {
		c := m.chunks[ci]
		a := append([]extent(nil), c[:extentChunk]...)
		b := append([]extent(nil), c[extentChunk:]...)
		m.chunks[ci] = b
		m.chunks = append(m.chunks, nil)
		copy(m.chunks[ci+1:], m.chunks[ci:])
		m.chunks[ci] = a
		cj++
	}
	k := ci
	for i := ci; i < len(m.chunks); i++ {
		if i <= cj && len(m.chunks[i]) == 0 {
			continue
		}
		m.chunks[k] = m.chunks[i]
		k++
	}
	clear(m.chunks[k:])
	m.chunks = m.chunks[:k]
}

// all calls f for every extent in target order, stopping if f returns false.
func (m *extentMap) all(f func(extent) bool) {
	for _, c := range m.chunks {
		for _, x := range c {
			if !f(x) {
				return
			}
		}
	}
}

// bytes returns the memory the map's extents take (the capacity of its
// chunks).
func (m *extentMap) bytes() int {
	n := cap(m.chunks) * int(unsafe.Sizeof([]extent(nil)))
	for _, c := range m.chunks {
		n += cap(c) * int(unsafe.Sizeof(extent{}))
	}
	return n
}
