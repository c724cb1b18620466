package etcdlog

import (
	"fmt"
	"math/bits"
	"sort"
	"sync"
	"sync/atomic"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/dmlog/dmlog/dirtylog"
)

// cache is a node's local copy of the log's state in etcd, fed by a watch
// on the log's prefix and valid at revision rev. It is plain data with
// methods that do no I/O: the watcher (watch.go) feeds it, the Log reads
// it. Reads of sync and mark bits are lock-free atomic loads; everything
// else is under mu.
type cache struct {
	k       keys
	self    string
	count   uint64
	chunk   uint64 // regions per chunk, a multiple of 64
	nchunks int

	rev atomic.Int64 // every event up to rev has been applied

	// others is the union of every other node's marks: a region is
	// clean for this node iff neither it nor others has it marked.
	others    []atomic.Uint64
	sync      []atomic.Uint64 // 1 = in sync
	pristine  []atomic.Uint64 // 1 = out of sync since creation, untouched
	syncCount atomic.Uint64

	mu      sync.Mutex
	changed chan struct{} // closed (and replaced) whenever rev moves
	nodes   map[string]int64
	marks   map[string]map[int]*markChunk
	syncMod []int64 // ModRevision of each sync chunk key; 0 = absent
	prisMod []int64 // ModRevision of each pristine chunk key; 0 = absent
	recov   string  // the recoverer's node id; "" = none
	claims  map[dirtylog.Region]string
	prio    map[dirtylog.Region]int64 // region -> CreateRevision
	cursor  uint64                    // this node's resync cursor
	corrupt error                     // first undecodable value seen
	tmp     []uint64
	utmp    []uint64
}

// markChunk is one node's marks in one chunk, as stored at mod.
type markChunk struct {
	words []uint64
	mod   int64
}

func newCache(k keys, self string, count, chunk uint64) *cache {
	nw := (count + 63) / 64
	c := &cache{
		k: k, self: self, count: count, chunk: chunk,
		nchunks:  int((count + chunk - 1) / chunk),
		others:   make([]atomic.Uint64, nw),
		sync:     make([]atomic.Uint64, nw),
		pristine: make([]atomic.Uint64, nw),
		changed:  make(chan struct{}),
		tmp:      make([]uint64, chunk/64),
		utmp:     make([]uint64, chunk/64),
	}
	c.syncMod = make([]int64, c.nchunks)
	c.prisMod = make([]int64, c.nchunks)
	c.resetLocked()
	return c
}

func (c *cache) resetLocked() {
	c.nodes = map[string]int64{}
	c.marks = map[string]map[int]*markChunk{}
	c.claims = map[dirtylog.Region]string{}
	c.prio = map[dirtylog.Region]int64{}
	for i := range c.others {
		c.others[i].Store(0)
		c.sync[i].Store(0)
		c.pristine[i].Store(0)
	}
	clear(c.syncMod)
	clear(c.prisMod)
	c.recov = ""
	c.syncCount.Store(0)
}

// chunkBits returns the number of regions in chunk i.
func (c *cache) chunkBits(i int) uint64 {
	return min(c.chunk, c.count-uint64(i)*c.chunk)
}

// chunkWords returns the word range of chunk i in the region bitmaps.
func (c *cache) chunkWords(i int) (lo, hi int) {
	lo = int(uint64(i) * c.chunk / 64)
	return lo, lo + int((c.chunkBits(i)+63)/64)
}

func (c *cache) inSync(r dirtylog.Region) bool {
	return c.sync[r/64].Load()&(1<<(r%64)) != 0
}

// cleanForOthers: no other node marks r, and r is in sync or pristine.
func (c *cache) cleanForOthers(r dirtylog.Region) bool {
	w, m := r/64, uint64(1)<<(r%64)
	return c.others[w].Load()&m == 0 && (c.sync[w].Load()|c.pristine[w].Load())&m != 0
}

func (c *cache) isPristine(r dirtylog.Region) bool {
	return c.pristine[r/64].Load()&(1<<(r%64)) != 0
}

// notifyLocked wakes every waiter.
func (c *cache) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// load replaces the whole state with kvs read at revision rev (a
// linearizable range read of the prefix).
func (c *cache) load(kvs []*mvccpb.KeyValue, rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rev <= c.rev.Load() {
		// The watch already brought the cache past this read: replacing
		// it would lose the events it applied after rev.
		return
	}
	old := make([]uint64, len(c.sync))
	for i := range c.sync {
		old[i] = c.sync[i].Load()
	}
	c.resetLocked()
	for _, kv := range kvs {
		c.putLocked(kv)
	}
	// A region that went out of sync while we were not watching may be
	// behind the cursor.
	for i := range old {
		if gone := old[i] &^ c.sync[i].Load(); gone != 0 {
			c.pullCursorLocked(uint64(i)*64 + uint64(bits.TrailingZeros64(gone)))
		}
	}
	c.rev.Store(rev)
	c.notifyLocked()
}

// apply applies the events of one watch response and advances rev.
func (c *cache) apply(evs []*mvccpb.Event, rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range evs {
		if ev.Kv.ModRevision <= c.rev.Load() {
			continue // already in a load at a later revision
		}
		if ev.Type == mvccpb.DELETE {
			c.deleteLocked(ev.Kv)
		} else {
			c.putLocked(ev.Kv)
		}
		rev = max(rev, ev.Kv.ModRevision)
	}
	if rev > c.rev.Load() {
		c.rev.Store(rev)
	}
	c.notifyLocked()
}

func (c *cache) noteCorruptLocked(key []byte, err error) {
	if c.corrupt == nil {
		c.corrupt = fmt.Errorf("key %q: %w", key, err)
	}
}

func (c *cache) putLocked(kv *mvccpb.KeyValue) {
	pk, ok := c.k.parse(string(kv.Key))
	if !ok {
		return
	}
	switch pk.kind {
	case kindNode:
		c.nodes[pk.node] = kv.CreateRevision
	case kindSync:
		tmp, ok := c.decodeChunkLocked(kv, pk.chunk) // corrupt: out of sync
		if !ok {
			return
		}
		c.setSyncLocked(pk.chunk, tmp)
		c.syncMod[pk.chunk] = kv.ModRevision
	case kindMark:
		if pk.chunk >= c.nchunks {
			c.noteCorruptLocked(kv.Key, ErrCorrupt)
			return
		}
		m := c.marks[pk.node]
		if m == nil {
			m = map[int]*markChunk{}
			c.marks[pk.node] = m
		}
		mc := m[pk.chunk]
		if mc == nil {
			mc = &markChunk{words: make([]uint64, (c.chunkBits(pk.chunk)+63)/64)}
			m[pk.chunk] = mc
		}
		old := c.utmp[:len(mc.words)]
		copy(old, mc.words)
		if err := decodeChunk(kv.Value, c.chunkBits(pk.chunk), mc.words); err != nil {
			c.noteCorruptLocked(kv.Key, err)
			clear(mc.words)
			// Unknown marks: treat the whole chunk as marked, the safe side.
			for i := range mc.words {
				mc.words[i] = ^uint64(0)
			}
		}
		mc.mod = kv.ModRevision
		c.unionLocked(pk.node, pk.chunk, old, mc.words)
	case kindPristine:
		tmp, ok := c.decodeChunkLocked(kv, pk.chunk) // corrupt: not pristine, so not clean
		if !ok {
			return
		}
		lo, hi := c.chunkWords(pk.chunk)
		for j := lo; j < hi; j++ {
			c.pristine[j].Store(tmp[j-lo])
		}
		c.prisMod[pk.chunk] = kv.ModRevision
	case kindRecoverer:
		c.recov = string(kv.Value)
	case kindClaim:
		c.claims[pk.region] = string(kv.Value)
	case kindPrio:
		if _, ok := c.prio[pk.region]; !ok {
			c.prio[pk.region] = kv.CreateRevision
		}
	}
}

// decodeChunkLocked decodes kv, the sync or pristine value of chunk i,
// into c.tmp. A value that does not decode is recorded as corruption and
// read as all zeros, the safe side for both bitmaps (out of sync, not
// pristine: resynced, never clean by mistake). ok is false for a chunk
// beyond the log's, which is ignored.
func (c *cache) decodeChunkLocked(kv *mvccpb.KeyValue, i int) (words []uint64, ok bool) {
	if i >= c.nchunks {
		c.noteCorruptLocked(kv.Key, ErrCorrupt)
		return nil, false
	}
	if err := decodeChunk(kv.Value, c.chunkBits(i), c.tmp); err != nil {
		c.noteCorruptLocked(kv.Key, err)
		clear(c.tmp)
	}
	return c.tmp, true
}

func (c *cache) deleteLocked(kv *mvccpb.KeyValue) {
	pk, ok := c.k.parse(string(kv.Key))
	if !ok {
		return
	}
	switch pk.kind {
	case kindNode:
		delete(c.nodes, pk.node)
	case kindSync:
		if pk.chunk < c.nchunks {
			clear(c.tmp)
			c.setSyncLocked(pk.chunk, c.tmp)
			c.syncMod[pk.chunk] = 0
		}
	case kindPristine:
		if pk.chunk < c.nchunks {
			lo, hi := c.chunkWords(pk.chunk)
			for j := lo; j < hi; j++ {
				c.pristine[j].Store(0)
			}
			c.prisMod[pk.chunk] = 0
		}
	case kindRecoverer:
		c.recov = ""
	case kindMark:
		if m := c.marks[pk.node]; m != nil {
			mc := m[pk.chunk]
			delete(m, pk.chunk)
			if len(m) == 0 {
				delete(c.marks, pk.node)
			}
			if mc != nil {
				c.unionLocked(pk.node, pk.chunk, mc.words, nil)
			}
		}
	case kindClaim:
		delete(c.claims, pk.region)
		// A recovery that ended without success (or whose recoverer
		// died) leaves the region out of sync: find it again.
		if uint64(pk.region) < c.count && !c.inSync(pk.region) {
			c.pullCursorLocked(uint64(pk.region))
		}
	case kindPrio:
		delete(c.prio, pk.region)
	}
}

// setSyncLocked stores chunk i's sync words, keeps the count, and pulls
// the resync cursor back to any region that went out of sync.
func (c *cache) setSyncLocked(i int, words []uint64) {
	lo, hi := c.chunkWords(i)
	pulled := false
	for j := lo; j < hi; j++ {
		nw := words[j-lo]
		old := c.sync[j].Swap(nw)
		if d := bits.OnesCount64(nw) - bits.OnesCount64(old); d != 0 {
			c.syncCount.Add(uint64(int64(d)))
		}
		if gone := old &^ nw; gone != 0 && !pulled {
			c.pullCursorLocked(uint64(j)*64 + uint64(bits.TrailingZeros64(gone)))
			pulled = true
		}
	}
}

func (c *cache) pullCursorLocked(r uint64) {
	if r < c.cursor {
		c.cursor = r
	}
}

// unionLocked updates others after node's marks in chunk i changed from
// old to new (nil: deleted). Words that only gained bits are OR-ed in;
// a word that lost bits is recomputed from every other node's marks.
func (c *cache) unionLocked(node string, i int, old, new []uint64) {
	if node == c.self {
		return
	}
	lo, _ := c.chunkWords(i)
	for j, o := range old {
		var n uint64
		if new != nil {
			n = new[j]
		}
		if o == n {
			continue
		}
		if o&^n == 0 {
			c.others[lo+j].Or(n)
			continue
		}
		var u uint64
		for other, m := range c.marks {
			if other == c.self {
				continue
			}
			if mc := m[i]; mc != nil {
				u |= mc.words[j]
			}
		}
		c.others[lo+j].Store(u)
	}
}

// wait returns a channel closed at the next change.
func (c *cache) wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// candidate is a region ResyncWork may try to claim, with the sync chunk's
// revision the claim must compare against.
type candidate struct {
	r       dirtylog.Region
	syncMod int64
	scanned bool // from the cursor scan (not the priority list)
}

// nextCandidate returns the first out-of-sync, unclaimed region: first
// from the priority list (oldest request first), else from the cursor on.
// skip holds regions already tried in this call.
func (c *cache) nextCandidate(skip map[dirtylog.Region]bool) (candidate, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.prio) > 0 {
		rs := make([]dirtylog.Region, 0, len(c.prio))
		for r := range c.prio {
			rs = append(rs, r)
		}
		sort.Slice(rs, func(i, j int) bool { return c.prio[rs[i]] < c.prio[rs[j]] })
		for _, r := range rs {
			if uint64(r) >= c.count || c.inSync(r) || skip[r] {
				continue
			}
			if _, claimed := c.claims[r]; claimed {
				continue
			}
			return candidate{r: r, syncMod: c.syncMod[uint64(r)/c.chunk]}, true
		}
	}
	for c.cursor < c.count {
		w := c.cursor / 64
		cand := ^c.sync[w].Load() & (^uint64(0) << (c.cursor % 64))
		if w == uint64(len(c.sync)-1) && c.count%64 != 0 {
			cand &= 1<<(c.count%64) - 1
		}
		for cand != 0 {
			r := dirtylog.Region(w*64 + uint64(bits.TrailingZeros64(cand)))
			cand &= cand - 1
			if _, claimed := c.claims[r]; claimed || skip[r] {
				continue
			}
			c.cursor = uint64(r) // advanced past r when the claim succeeds
			return candidate{r: r, syncMod: c.syncMod[uint64(r)/c.chunk], scanned: true}, true
		}
		c.cursor = (w + 1) * 64
	}
	return candidate{}, false
}

// advanceCursor moves the cursor past r after r was claimed.
func (c *cache) advanceCursor(r dirtylog.Region) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if uint64(r) >= c.cursor {
		c.cursor = uint64(r) + 1
	}
}

func (c *cache) pullCursor(r dirtylog.Region) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pullCursorLocked(uint64(r))
}

func (c *cache) resetCursor() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cursor = 0
}

// syncChunk returns a copy of chunk i's sync words and its revision.
func (c *cache) syncChunk(i int) ([]uint64, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.copyChunkLocked(c.sync, i), c.syncMod[i]
}

// copyChunkLocked returns a copy of chunk i's words of bitmap b.
func (c *cache) copyChunkLocked(b []atomic.Uint64, i int) []uint64 {
	lo, hi := c.chunkWords(i)
	w := make([]uint64, hi-lo)
	for j := range w {
		w[j] = b[lo+j].Load()
	}
	return w
}

// orphans returns the nodes that have marks but no liveness key.
func (c *cache) orphans() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for node := range c.marks {
		if _, alive := c.nodes[node]; !alive {
			out = append(out, node)
		}
	}
	sort.Strings(out)
	return out
}

// claimHolder returns the node recovering r, if any.
func (c *cache) claimHolder(r dirtylog.Region) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.claims[r]
	return n, ok
}

func (c *cache) hasPrio(r dirtylog.Region) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.prio[r]
	return ok
}

func (c *cache) alive(node string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rev, ok := c.nodes[node]
	return rev, ok
}

func (c *cache) corruption() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.corrupt
}

// reapChunk is one chunk of a reap plan: the node's marks, and the sync
// words (at revision syncMod) they make out of sync.
type reapChunk struct {
	chunk   int
	marks   []uint64
	sync    []uint64
	syncMod int64
}

// reapPlan copies, consistently at the cache's revision, what turning
// node's marks into resync work needs.
func (c *cache) reapPlan(node string) ([]reapChunk, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var plan []reapChunk
	for i, mc := range c.marks[node] {
		plan = append(plan, reapChunk{chunk: i, marks: append([]uint64(nil), mc.words...),
			sync: c.copyChunkLocked(c.sync, i), syncMod: c.syncMod[i]})
	}
	sort.Slice(plan, func(i, j int) bool { return plan[i].chunk < plan[j].chunk })
	return plan, c.rev.Load()
}

// pristineChunk returns a copy of chunk i's pristine words and revision.
func (c *cache) pristineChunk(i int) ([]uint64, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.copyChunkLocked(c.pristine, i), c.prisMod[i]
}

// recovery returns the recoverer ("" if none), how many claims node holds
// and the lowest region it holds one on.
func (c *cache) recovery(node string) (recoverer string, claims int, low dirtylog.Region) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for r, n := range c.claims {
		if n == node {
			if claims == 0 || r < low {
				low = r
			}
			claims++
		}
	}
	return c.recov, claims, low
}
