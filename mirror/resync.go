package mirror

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/dmlog/dmlog/dirtylog"
)

// resyncState is the resync worker's bookkeeping. Lock order: askMu
// before mu; neither is held with Mirror.mu (the worker takes Mirror.mu
// only with neither held).
type resyncState struct {
	mu      sync.Mutex // guards every field below but askMu and bufs
	next    time.Time  // rate limiter: when the next byte may be copied
	started time.Time  // first copy of the current burst of work
	burst   int64      // bytes copied since started
	failed  bool       // a copy failed: back off before asking for work
	backoff time.Duration
	bufs    sync.Pool // copy buffers (safe for concurrent use itself)
	// copying holds the regions this mirror is recovering, from the
	// ResyncWork that handed one out to the SetRegionSync that ends its
	// recovery. A log that recovers one region at a time (remote, etcdlog)
	// hands its recoverer the unfinished region again; finding it here
	// means "no more work for now". askMu keeps ResyncWork calls apart
	// from the end of a recovery (taking r out of copying and the
	// SetRegionSync), so a region found here has not been set yet.
	copying map[dirtylog.Region]struct{}
	askMu   sync.Mutex
	ended   chan struct{} // closed (and replaced) when a recovery ends
}

func (m *Mirror) kickResync() {
	select {
	case m.resyncKick <- struct{}{}:
	default:
	}
}

// resyncLoop is the background worker: it takes out-of-sync regions from
// the log (ResyncWork) and copies them, Options.ResyncParallel at once;
// when the log has none it copies regions to joining legs. After a failed
// copy it waits (ResyncRetry, doubling to a minute) before asking for work
// again, so a region whose copy keeps failing is not retried in a loop.
func (m *Mirror) resyncLoop() {
	defer m.wg.Done()
	var g errgroup.Group
	g.SetLimit(m.opts.resyncParallel())
	defer func() { _ = g.Wait() }()
	for {
		if m.ctx.Err() != nil {
			return
		}
		if d := m.takeBackoff(); d > 0 {
			if !m.sleep(d) {
				return
			}
			continue
		}
		if m.scheduleOne(&g) {
			continue
		}
		// Nothing to hand out: wait for in-flight copies, report, idle.
		_ = g.Wait()
		if m.scheduleOne(&g) {
			continue
		}
		m.reportProgress(true)
		select {
		case <-m.ctx.Done():
			return
		case <-m.resyncKick:
		case <-time.After(time.Second): // remote logs change under us
		}
	}
}

// scheduleOne starts one copy if there is work.
func (m *Mirror) scheduleOne(g *errgroup.Group) bool {
	r, ok, busy, err := m.takeResyncWork(m.ctx)
	if err != nil {
		m.noteResyncFailure()
		return false
	}
	if busy {
		return false
	}
	if ok {
		g.Go(func() error { m.recoverRegion(m.ctx, r); return nil })
		return true
	}
	if r, legs, ok := m.nextJoinRegion(); ok {
		g.Go(func() error { m.joinCopy(m.ctx, r, legs); return nil })
		return true
	}
	return false
}

func (m *Mirror) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-m.ctx.Done():
		return false
	case <-t.C:
		return true
	case <-m.resyncKick:
		return true
	}
}

func (m *Mirror) noteResyncFailure() {
	m.stats.resyncFailures.Add(1)
	m.resync.mu.Lock()
	m.resync.failed = true
	m.resync.mu.Unlock()
}

func (m *Mirror) takeBackoff() time.Duration {
	s := &m.resync
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.failed {
		return 0
	}
	s.failed = false
	if s.backoff == 0 {
		s.backoff = m.opts.resyncRetry()
	} else {
		s.backoff = min(2*s.backoff, time.Minute)
	}
	return s.backoff
}

func (m *Mirror) resetBackoff() {
	m.resync.mu.Lock()
	m.resync.backoff = 0
	m.resync.failed = false
	m.resync.mu.Unlock()
	m.kickResync()
}

// takeResyncWork asks the log for a region to recover and records it in
// resyncState.copying. busy reports that the log returned a region this
// mirror is already recovering (a log that allows one recovery at a time
// repeats its recoverer's unfinished region): no more work for now.
func (m *Mirror) takeResyncWork(ctx context.Context) (r dirtylog.Region, ok, busy bool, err error) {
	s := &m.resync
	s.askMu.Lock()
	defer s.askMu.Unlock()
	r, ok, err = m.log.ResyncWork(ctx)
	if err != nil || !ok {
		return r, false, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.copying[r]; dup {
		return r, false, true, nil
	}
	if s.copying == nil {
		s.copying = map[dirtylog.Region]struct{}{}
	}
	s.copying[r] = struct{}{}
	return r, true, false, nil
}

// endRecovery records the outcome of r's recovery in the log and takes r
// out of resyncState.copying, with no ResyncWork in between: a log that
// hands out each region once until SetRegionSync (Core, Disk) may hand r
// out again as soon as this returns, and that is a new recovery; a log
// that repeats its recoverer's region does so only before this.
func (m *Mirror) endRecovery(r dirtylog.Region, inSync bool) {
	s := &m.resync
	s.askMu.Lock()
	defer s.askMu.Unlock()
	m.log.SetRegionSync(r, inSync)
	s.mu.Lock()
	delete(s.copying, r)
	if s.ended != nil {
		close(s.ended)
		s.ended = nil
	}
	s.mu.Unlock()
}

// waitCopied waits until this mirror is no longer recovering r, or ctx
// ends.
func (m *Mirror) waitCopied(ctx context.Context, r dirtylog.Region) {
	s := &m.resync
	for {
		s.mu.Lock()
		if _, busy := s.copying[r]; !busy {
			s.mu.Unlock()
			return
		}
		if s.ended == nil {
			s.ended = make(chan struct{})
		}
		ch := s.ended
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
}

// recoverRegion is the kernel's recovery of one region: quiesce it (wait
// for its writes in flight, park new ones), copy it from the default leg
// to every other leg, and record the outcome in the log. A copy error
// fails the leg (status S) and ends the region's recovery as failed.
func (m *Mirror) recoverRegion(ctx context.Context, r dirtylog.Region) {
	m.mu.Lock()
	e, err := m.quiesceLocked(ctx, r)
	if err != nil {
		m.mu.Unlock()
		m.endRecovery(r, false) // still out of sync
		return
	}
	c := m.cfg.Load()
	m.mu.Unlock()

	var targets []*legState
	for i, l := range c.legs {
		if i != c.def {
			targets = append(targets, l)
		}
	}
	cerr := m.copyRegion(ctx, c, r, targets)
	// The outcome reaches the log before m.mu is taken: endRecovery may
	// wait for a ResyncWork in flight (askMu), which must not hold up the
	// mirror's I/O. The region is still quiesced, so none of our writes
	// sees the log and the region table disagree meanwhile. The count
	// comes first, so that whoever sees the region in sync in the log
	// (WaitInSync) also sees it counted.
	if cerr == nil {
		m.stats.resyncedRegions.Add(1)
	}
	m.endRecovery(r, cerr == nil)

	m.mu.Lock()
	var joined []int
	if cerr == nil {
		// Recovered: in sync, and clean once the legs are synced. The
		// region joins the idle dirty set, so the clear reaches the log
		// with the next batch of clears (after the flush callback).
		m.syncEpoch++
		e.inSync = true
		if !e.dirty {
			e.dirty = true
			e.idle = m.clearEpoch
			m.shardOf(r).idleDirty++
			m.kick()
		}
		joined = m.joinDoneLocked(c, r, targets)
	} else {
		if ctx.Err() == nil {
			m.noteResyncFailure()
		}
		m.syncEpoch++
		e.inSync = false
	}
	m.unquiesceLocked(r, e)
	inSyncNow := m.checkInSyncLocked()
	m.mu.Unlock()
	for _, i := range joined {
		m.event(Event{Kind: EventLegJoined, Leg: i})
	}
	if inSyncNow {
		m.event(Event{Kind: EventInSync, Leg: -1})
	}
	m.reportProgress(false)
}

// checkInSyncLocked notices the mirror reaching full sync: as the kernel,
// it resets every leg's error state (not the sticky log failure) and
// reports EventInSync once.
func (m *Mirror) checkInSyncLocked() bool {
	if m.inSync || m.log.SyncCount() != m.nregions {
		return false
	}
	m.inSync = true
	for _, l := range m.cfg.Load().legs {
		l.errTypes.Store(0)
		l.errCount.Store(0)
	}
	m.cond.Broadcast()
	return true
}

// copyRegion copies region r from the default leg of c to targets, in
// chunks of ResyncChunk, paced by ResyncRate.
func (m *Mirror) copyRegion(ctx context.Context, c *config, r dirtylog.Region, targets []*legState) error {
	if len(targets) == 0 {
		return nil
	}
	src := c.legs[c.def]
	start, length := int64(r)<<m.rshift, m.regionLen(r)
	chunk := int64(m.opts.resyncChunk())
	bp, _ := m.resync.bufs.Get().(*[]byte)
	if bp == nil || int64(len(*bp)) < min(chunk, m.rsize) {
		b := make([]byte, min(chunk, m.rsize))
		bp = &b
	}
	defer m.resync.bufs.Put(bp)
	errs := make([]error, len(targets))
	for o := int64(0); o < length; o += chunk {
		n := min(chunk, length-o)
		if err := m.pace(ctx, n); err != nil {
			return err
		}
		buf := (*bp)[:n]
		if _, err := src.dev.ReadAt(buf, start+o); err != nil {
			err = fmt.Errorf("mirror: resync reading %s at %d: %w", src.name, start+o, err)
			m.failLeg(src, errSync, err)
			return err
		}
		if len(targets) == 1 {
			_, errs[0] = targets[0].dev.WriteAt(buf, start+o)
		} else {
			var wg sync.WaitGroup
			for i, t := range targets {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = t.dev.WriteAt(buf, start+o)
				}()
			}
			wg.Wait()
		}
		var first error
		for i, err := range errs {
			if err != nil {
				err = fmt.Errorf("mirror: resync writing %s at %d: %w", targets[i].name, start+o, err)
				m.failLeg(targets[i], errSync, err)
				if first == nil {
					first = err
				}
			}
		}
		if first != nil {
			return first
		}
		m.stats.resyncedBytes.Add(n)
		m.resync.mu.Lock()
		if m.resync.started.IsZero() {
			m.resync.started = time.Now()
		}
		m.resync.burst += n
		m.resync.mu.Unlock()
	}
	return nil
}

// pace waits until n more bytes may be copied under ResyncRate.
func (m *Mirror) pace(ctx context.Context, n int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rate := m.opts.ResyncRate
	if rate <= 0 {
		return nil
	}
	s := &m.resync
	s.mu.Lock()
	now := time.Now()
	if s.next.Before(now) {
		s.next = now
	}
	wait := s.next.Sub(now)
	s.next = s.next.Add(time.Duration(float64(n) / float64(rate) * float64(time.Second)))
	s.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Progress returns the current resync progress.
func (m *Mirror) Progress() Progress {
	in, total := m.log.SyncCount(), m.nregions
	p := Progress{InSync: in, Total: total, Copied: m.stats.resyncedBytes.Load()}
	m.resync.mu.Lock()
	if !m.resync.started.IsZero() {
		if d := time.Since(m.resync.started).Seconds(); d > 0 {
			p.BytesPerSec = float64(m.resync.burst) / d
		}
	}
	m.resync.mu.Unlock()
	p.Done = in >= total && !m.anyJoining()
	if !p.Done && p.BytesPerSec > 0 {
		left := float64(total-min(in, total)) * float64(m.rsize)
		p.ETA = time.Duration(left / p.BytesPerSec * float64(time.Second))
	}
	return p
}

func (m *Mirror) anyJoining() bool {
	for _, l := range m.cfg.Load().legs {
		if l.joining.Load() {
			return true
		}
	}
	return false
}

// reportProgress calls OnProgress; idle reports are sent once when the
// work runs out.
func (m *Mirror) reportProgress(idle bool) {
	if m.opts.OnProgress == nil && !idle {
		return
	}
	p := m.Progress()
	if idle {
		m.resync.mu.Lock()
		active := !m.resync.started.IsZero()
		m.resync.started = time.Time{}
		m.resync.burst = 0
		m.resync.mu.Unlock()
		if !active || m.opts.OnProgress == nil {
			return
		}
	}
	m.opts.OnProgress(p)
}

// Resync runs resync in the caller's goroutine until no region is out of
// sync and no leg is joining, or ctx ends. It is for mirrors built with
// NoResync; with the background worker running it copies alongside it.
// A region whose copy fails ends its pass: Resync returns an error wrapping
// ErrIO.
func (m *Mirror) Resync(ctx context.Context) error {
	if !m.enter() {
		return ErrClosed
	}
	defer m.exit()
	var g errgroup.Group
	g.SetLimit(m.opts.resyncParallel())
	before := m.stats.resyncFailures.Load()
	for ctx.Err() == nil {
		r, ok, busy, err := m.takeResyncWork(ctx)
		if err != nil {
			_ = g.Wait()
			return fmt.Errorf("mirror: resync: %w", err)
		}
		if ok {
			g.Go(func() error { m.recoverRegion(ctx, r); return nil })
			continue
		}
		if busy { // the log's one recovery is ours and still running
			_ = g.Wait()
			m.waitCopied(ctx, r) // by the background worker: let it finish
			continue
		}
		if r, legs, ok := m.nextJoinRegion(); ok {
			g.Go(func() error { m.joinCopy(ctx, r, legs); return nil })
			continue
		}
		_ = g.Wait()
		if m.stats.resyncFailures.Load() != before {
			return fmt.Errorf("%w: resync copy failed", ErrIO)
		}
		if _, _, ok := m.peekWork(); !ok {
			break
		}
	}
	_ = g.Wait()
	m.reportProgress(true)
	return ctx.Err()
}

// peekWork reports whether anything is left to copy.
func (m *Mirror) peekWork() (uint64, uint64, bool) {
	in := m.log.SyncCount()
	return in, m.nregions, in < m.nregions || m.anyJoining()
}

// WaitInSync waits until every region is in sync and no leg is joining,
// or ctx ends.
func (m *Mirror) WaitInSync(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		m.mu.Lock()
		m.cond.Broadcast()
		m.mu.Unlock()
	})
	defer stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		if _, _, busy := m.peekWork(); !busy {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if m.closed.Load() {
			return ErrClosed
		}
		m.wait()
	}
}

// nextJoinRegion hands out the next region some joining leg still needs,
// with the legs that need it (their bits are taken; a failed copy puts
// them back).
func (m *Mirror) nextJoinRegion() (dirtylog.Region, []*legState, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.cfg.Load()
	var joiners []*legState
	for _, l := range c.legs {
		if l.joining.Load() && l.joinLeft != nil {
			joiners = append(joiners, l)
		}
	}
	if len(joiners) == 0 {
		return 0, nil, false
	}
	for pass := 0; pass < 2; pass++ {
		best := uint(m.nregions)
		for _, l := range joiners {
			if i, ok := l.joinLeft.NextSet(uint(m.joinCursor)); ok && i < best {
				best = i
			}
		}
		if best < uint(m.nregions) {
			var legs []*legState
			for _, l := range joiners {
				if l.joinLeft.Test(best) {
					l.joinLeft.Clear(best)
					legs = append(legs, l)
				}
			}
			m.joinCursor = uint64(best) + 1
			return dirtylog.Region(best), legs, true
		}
		m.joinCursor = 0
	}
	return 0, nil, false
}

// joinCopy copies region r to joining legs.
func (m *Mirror) joinCopy(ctx context.Context, r dirtylog.Region, legs []*legState) {
	m.mu.Lock()
	e, err := m.quiesceLocked(ctx, r)
	if err != nil {
		for _, l := range legs {
			l.joinLeft.Set(uint(r))
		}
		m.mu.Unlock()
		return
	}
	c := m.cfg.Load()
	m.mu.Unlock()
	cerr := m.copyRegion(ctx, c, r, legs)
	m.mu.Lock()
	var joined []int
	if cerr != nil {
		for _, l := range legs {
			if !l.failed() {
				l.joinLeft.Set(uint(r))
			}
		}
		if ctx.Err() == nil {
			m.noteResyncFailure()
		}
	} else {
		joined = m.joinAccountLocked(legs)
	}
	m.unquiesceLocked(r, e)
	m.mu.Unlock()
	for _, i := range joined {
		m.event(Event{Kind: EventLegJoined, Leg: i})
	}
	m.reportProgress(false)
}

// joinDoneLocked records that region r was copied to targets by a
// recovery; it returns the legs that finished joining.
func (m *Mirror) joinDoneLocked(c *config, r dirtylog.Region, targets []*legState) []int {
	var done []*legState
	for _, l := range targets {
		if l.joining.Load() && l.joinLeft != nil && l.joinLeft.Test(uint(r)) {
			l.joinLeft.Clear(uint(r))
			done = append(done, l)
		}
	}
	return m.joinAccountLocked(done)
}

// joinAccountLocked counts one region done for each leg and activates the
// legs that have every region.
func (m *Mirror) joinAccountLocked(legs []*legState) []int {
	var joined []int
	c := m.cfg.Load()
	for _, l := range legs {
		l.joinRemaining--
		if l.joinRemaining == 0 && l.joinLeft.None() {
			l.joining.Store(false)
			l.joinLeft = nil
			for i, x := range c.legs {
				if x == l {
					joined = append(joined, i)
				}
			}
			m.cond.Broadcast()
		}
	}
	return joined
}
