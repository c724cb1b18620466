package remote

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
)

// hostedLog is one log the server hosts: the backing core or disk log, the
// cluster state (coherence) and the members. mu serialises every request
// for the log, which gives all nodes one order of events: whatever was
// acknowledged to one node is seen by every later request of any node.
type hostedLog struct {
	srv  *Server
	uuid string
	spec ctrSpec

	backing dirtylog.Log

	// holdUntil: no resync work is handed out before this time (a disk log
	// reopened after a restart waits for its nodes to replay their marks).
	holdUntil time.Time

	mu        sync.Mutex
	st        *coherence
	members   map[NodeID]*member
	destroyed bool
}

type member struct {
	conn      *serverConn // nil while disconnected
	suspended bool        // postsuspended: a disconnect is a clean leave
	timer     stopper     // death timer while disconnected
	gen       uint64
}

// ctrSpec is a parsed CTR string: "<dev_sectors> <type> <args...>".
type ctrSpec struct {
	raw          string // normalised: fields joined by one space
	devSectors   uint64
	kind         string // "clustered-core" or "clustered-disk"
	dev          string // disk only
	regionSize   uint64 // sectors
	sync         dirtylog.SyncMode
	blockOnError bool
	logArgs      []string // for dirtylog.New
}

// parseCtr parses a CTR payload with the kernel's and cmirrord's grammar.
func parseCtr(p []byte) (ctrSpec, error) {
	var sp ctrSpec
	if i := strings.IndexByte(string(p), 0); i >= 0 {
		p = p[:i]
	}
	f := strings.Fields(string(p))
	if len(f) < 3 {
		return sp, fmt.Errorf("%w: CTR %q: want \"<device sectors> <type> <args>\"", dirtylog.ErrBadArgs, p)
	}
	sp.raw = strings.Join(f, " ")
	n, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil || n == 0 || n > 1<<53 {
		return sp, fmt.Errorf("%w: CTR %q: bad device length %q", dirtylog.ErrBadArgs, sp.raw, f[0])
	}
	sp.devSectors = n
	kind := f[1]
	var args []string
	for _, a := range f[2:] {
		if a == "block_on_error" {
			sp.blockOnError = true
			continue
		}
		args = append(args, a)
	}
	switch kind {
	case "clustered-core", "core":
		sp.kind = "clustered-core"
		if len(args) < 1 || len(args) > 2 {
			return sp, fmt.Errorf("%w: %s takes <region_size> [sync|nosync], got %q", dirtylog.ErrBadArgs, kind, args)
		}
	case "clustered-disk", "disk":
		sp.kind = "clustered-disk"
		if len(args) < 2 || len(args) > 3 {
			return sp, fmt.Errorf("%w: %s takes <log_dev> <region_size> [sync|nosync], got %q", dirtylog.ErrBadArgs, kind, args)
		}
		sp.dev = args[0]
	default:
		return sp, fmt.Errorf("%w: unknown log type %q (want clustered-core or clustered-disk)", dirtylog.ErrBadArgs, kind)
	}
	rest := args
	if sp.dev != "" {
		rest = args[1:]
	}
	sp.regionSize, _ = strconv.ParseUint(rest[0], 10, 32)
	if len(rest) > 1 {
		switch rest[1] {
		case "sync":
			sp.sync = dirtylog.ForceSync
		case "nosync":
			sp.sync = dirtylog.NoSync
		}
	}
	sp.logArgs = args
	return sp, nil
}

// newHostedLog builds the backing log for sp.
func (s *Server) newHostedLog(uuid string, sp ctrSpec) (*hostedLog, error) {
	env := dirtylog.Env{
		DeviceSize:       int64(sp.devSectors) * dirtylog.SectorSize,
		Open:             s.opts.Open,
		LogicalBlockSize: s.opts.LogicalBlockSize,
		OnEvent: func(e dirtylog.Event) {
			s.log.Error("log event", "uuid", uuid, "event", e.String())
		},
	}
	if rs := sp.regionSize; rs >= 2 {
		if n := (sp.devSectors + rs - 1) / rs; n > s.opts.MaxRegions {
			return nil, fmt.Errorf("%w: %d regions is more than this server's limit of %d", dirtylog.ErrBadArgs, n, s.opts.MaxRegions)
		}
	}
	typ, args := "core", sp.logArgs
	var grownFrom uint64
	var dev dirtylog.Device
	existing := false
	opened := false
	if sp.kind == "clustered-disk" {
		typ = "disk"
		if s.opts.Open == nil {
			return nil, fmt.Errorf("%w: this server opens no devices (ServerOptions.Open is nil)", dirtylog.ErrBadArgs)
		}
		var err error
		if dev, err = s.opts.Open(sp.dev); err != nil {
			return nil, fmt.Errorf("remote: opening log device %s: %w", sp.dev, err)
		}
		// cmirrord, unlike the kernel, does not let sync/nosync re-initialise
		// an existing log: they only decide the state of regions the log
		// grows by. Open an existing log in the default mode.
		var hdr [16]byte
		_, rerr := dev.ReadAt(hdr[:], 0)
		existing = rerr == nil && binary.LittleEndian.Uint32(hdr[:]) == dirtylog.DiskMagic
		if existing && sp.sync != dirtylog.DefaultSync {
			args = args[:2]
			if sp.sync == dirtylog.NoSync {
				grownFrom = binary.LittleEndian.Uint64(hdr[8:])
			} else {
				grownFrom = ^uint64(0) // default mode already dirties new regions
			}
		} else {
			grownFrom = ^uint64(0)
		}
		env.Open = func(string) (dirtylog.Device, error) { opened = true; return dev, nil }
	}
	b, err := dirtylog.New(typ, args, env)
	if err != nil {
		if c, ok := dev.(io.Closer); ok && !opened {
			_ = c.Close()
		}
		return nil, err
	}
	ctx := context.Background()
	st := newCoherence(b.RegionCount(),
		func(r dirtylog.Region) bool { ok, _ := b.IsClean(ctx, r); return ok },
		func(r dirtylog.Region) bool { ok, _ := b.InSync(ctx, r); return ok })
	if typ == "disk" && grownFrom < st.count {
		for r := dirtylog.Region(grownFrom); uint64(r) < st.count; r++ {
			if st.setRegionSync(0, r, true) == cleanCleaned { // no node yet: nothing claimed
				b.ClearRegion(r)
			}
		}
		if err := b.Flush(ctx); err != nil {
			_ = b.Close()
			return nil, err
		}
	}
	hl := &hostedLog{srv: s, uuid: uuid, spec: sp, backing: b, st: st, members: map[NodeID]*member{}}
	if existing {
		// The log outlived a server (or cluster) restart. The nodes that
		// were writing lost their per-node marks with the old server and
		// replay them when they reconnect; until they had the chance, a
		// region they write must not be resynced and cleaned under them.
		// Its flushed marks keep it out of sync meanwhile.
		grace := s.opts.DeadAfter
		if grace <= 0 {
			grace = DefaultDeadAfter
		}
		hl.holdUntil = s.now().Add(grace)
	}
	return hl, nil
}

// join attaches node n, speaking on sc, to the log. A node that is
// already a member (reconnecting, or replacing a half-dead connection)
// keeps its marks.
func (hl *hostedLog) join(n NodeID, sc *serverConn) error {
	hl.mu.Lock()
	defer hl.mu.Unlock()
	if hl.destroyed {
		return fmt.Errorf("%w: log %s is being destroyed", ErrNoLog, hl.uuid)
	}
	m := hl.members[n]
	rejoin := m != nil
	if m == nil {
		m = &member{}
		hl.members[n] = m
	}
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
	m.gen++
	m.conn = sc
	hl.st.join(n)
	hl.srv.log.Info("node joined", "uuid", hl.uuid, "node", n, "conn", sc.id, "rejoin", rejoin,
		"members", len(hl.members), "sync_count", hl.st.syncCount)
	return nil
}

// detach notes that sc, which carried node n, is gone. A node that had
// not suspended is declared dead after DeadAfter unless it reconnects.
func (hl *hostedLog) detach(n NodeID, sc *serverConn) {
	hl.mu.Lock()
	defer hl.mu.Unlock()
	m := hl.members[n]
	if m == nil || m.conn != sc || hl.destroyed {
		return
	}
	m.conn = nil
	m.gen++
	if det := hl.srv.detached; det != nil {
		defer func() { det(hl.uuid, n, m.timer != nil) }()
	}
	if m.suspended {
		hl.srv.log.Info("node disconnected after suspend", "uuid", hl.uuid, "node", n)
		return
	}
	d := hl.srv.opts.DeadAfter
	if d < 0 {
		hl.srv.log.Warn("node disconnected without suspend; never declared dead", "uuid", hl.uuid, "node", n)
		return
	}
	gen := m.gen
	hl.srv.log.Warn("node disconnected without suspend", "uuid", hl.uuid, "node", n, "dead_after", d)
	m.timer = hl.srv.afterFunc(d, func() { hl.expire(n, gen) })
}

// expire declares node n dead if it is still the disconnection of
// generation gen.
func (hl *hostedLog) expire(n NodeID, gen uint64) {
	hl.mu.Lock()
	m := hl.members[n]
	if m == nil || m.conn != nil || m.gen != gen || hl.destroyed {
		hl.mu.Unlock()
		return
	}
	delete(hl.members, n)
	resync, released := hl.st.leave(n)
	hl.mu.Unlock()
	slices.Sort(resync)
	hl.srv.log.Warn("node declared dead", "uuid", hl.uuid, "node", n,
		"regions_to_resync", len(resync), "recovery_claim_released", released)
}

// leave handles DTR: node n leaves for good; regions it still marks
// become resync work. It reports whether the log has no members left.
func (hl *hostedLog) leave(n NodeID) (empty bool) {
	hl.mu.Lock()
	defer hl.mu.Unlock()
	if m := hl.members[n]; m != nil && m.timer != nil {
		m.timer.Stop()
	}
	delete(hl.members, n)
	resync, _ := hl.st.leave(n)
	if len(resync) > 0 {
		hl.srv.log.Warn("node left with regions marked; they will be resynced", "uuid", hl.uuid, "node", n, "regions", len(resync))
	} else {
		hl.srv.log.Info("node left", "uuid", hl.uuid, "node", n)
	}
	return len(hl.members) == 0
}

// destroy closes the backing log; later requests fail.
func (hl *hostedLog) destroy() error {
	hl.mu.Lock()
	if hl.destroyed {
		hl.mu.Unlock()
		return nil
	}
	hl.destroyed = true
	for _, m := range hl.members {
		if m.timer != nil {
			m.timer.Stop()
		}
	}
	hl.mu.Unlock()
	return hl.backing.Close()
}

// apply mirrors a clean-bit change into the backing log.
func (hl *hostedLog) apply(c cleanChange, r dirtylog.Region) {
	switch c {
	case cleanDirtied:
		hl.backing.MarkRegion(r)
	case cleanCleaned:
		hl.backing.ClearRegion(r)
	}
}

func regionArg(p []byte) (dirtylog.Region, error) {
	if len(p) != 8 {
		return 0, fmt.Errorf("%w: want an 8-byte region, got %d bytes", ErrBadFrame, len(p))
	}
	return dirtylog.Region(binary.LittleEndian.Uint64(p)), nil
}

func regionList(p []byte) error {
	if len(p)%8 != 0 {
		return fmt.Errorf("%w: region list of %d bytes is not a multiple of 8", ErrBadFrame, len(p))
	}
	return nil
}

func appendU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }

func appendBool(b []byte, v bool) []byte {
	if v {
		return appendU64(b, 1)
	}
	return appendU64(b, 0)
}

// handle serves one request of node n (not CTR or DTR), appending the
// reply payload to out.
func (hl *hostedLog) handle(ctx context.Context, n NodeID, t RequestType, p []byte, out []byte) ([]byte, error) {
	hl.mu.Lock()
	if hl.destroyed {
		hl.mu.Unlock()
		return out, fmt.Errorf("%w: log %s destroyed", ErrNoLog, hl.uuid)
	}
	st := hl.st
	switch t {
	case RequestMarkRegion, RequestClearRegion, RequestFlush:
		if err := regionList(p); err != nil {
			hl.mu.Unlock()
			return out, err
		}
		for i := 0; i < len(p); i += 8 {
			r := dirtylog.Region(binary.LittleEndian.Uint64(p[i:]))
			if t == RequestClearRegion {
				hl.apply(st.clear(n, r), r)
			} else {
				hl.apply(st.mark(n, r), r)
			}
		}
		hl.mu.Unlock()
		if t != RequestFlush {
			return out, nil
		}
		// The backing log is safe for concurrent use, and its Flush makes
		// every mark made before it started durable: flush outside mu so
		// other nodes' requests go on meanwhile.
		return out, hl.backing.Flush(ctx)
	case RequestPostsuspend:
		if m := hl.members[n]; m != nil {
			m.suspended = true
		}
		st.postsuspend(n)
		hl.mu.Unlock()
		return out, hl.backing.Flush(ctx)
	}
	defer hl.mu.Unlock()
	switch t {
	case RequestPresuspend:
		st.presuspend(n)
	case RequestResume:
		if m := hl.members[n]; m != nil {
			m.suspended = false
		}
		st.resume(n)
	case RequestGetRegionSize:
		out = appendU64(out, hl.spec.regionSize)
	case RequestIsClean, RequestInSync, RequestIsRemoteRecovering:
		r, err := regionArg(p)
		if err != nil {
			return out, err
		}
		if !st.inRange(r) {
			return out, fmt.Errorf("%w: region %d of %d", dirtylog.ErrRegionRange, r, st.count)
		}
		switch t {
		case RequestIsClean:
			out = appendBool(out, st.isClean(r))
		case RequestInSync:
			out = appendBool(out, st.inSync(r))
		default:
			rec, hint := st.remoteRecovering(n, r)
			out = appendU64(appendBool(out, rec), hint)
		}
	case RequestGetResyncWork:
		if !hl.holdUntil.IsZero() && hl.srv.now().Before(hl.holdUntil) {
			out = appendU64(appendBool(out, false), 0)
			break
		}
		r, ok := st.resyncWork(n)
		out = appendU64(appendBool(out, ok), uint64(r))
	case RequestSetRegionSync:
		if len(p) != 16 {
			return out, fmt.Errorf("%w: SET_REGION_SYNC wants 16 bytes, got %d", ErrBadFrame, len(p))
		}
		r := dirtylog.Region(binary.LittleEndian.Uint64(p))
		in := int64(binary.LittleEndian.Uint64(p[8:])) != 0
		hl.apply(st.setRegionSync(n, r, in), r)
	case RequestGetSyncCount:
		out = appendU64(out, st.syncCount)
	case RequestStatusInfo:
		out = append(out, hl.statusInfo()...)
	case RequestStatusTable:
		out = append(out, hl.statusTable()...)
	default:
		return out, fmt.Errorf("%w: %v", ErrUnknownRequest, t)
	}
	return out, nil
}

// statusInfo is cmirrord's INFO: "1 clustered-core" or
// "3 clustered-disk <dev> <A|D|F>".
func (hl *hostedLog) statusInfo() string {
	f := strings.Fields(hl.backing.Status())
	if len(f) >= 2 {
		f[1] = "clustered-" + f[1]
	}
	return strings.Join(f, " ")
}

// statusTable is cmirrord's TABLE: "clustered-core <rs> [sync |nosync ]
// [block_on_error ]", with "<dev> " before <rs> for clustered-disk.
func (hl *hostedLog) statusTable() string {
	var b strings.Builder
	b.WriteString(hl.spec.kind)
	b.WriteByte(' ')
	if hl.spec.dev != "" {
		b.WriteString(hl.spec.dev)
		b.WriteByte(' ')
	}
	b.WriteString(strconv.FormatUint(hl.spec.regionSize, 10))
	b.WriteByte(' ')
	if s := hl.spec.sync.String(); s != "" {
		b.WriteString(s)
		b.WriteByte(' ')
	}
	if hl.spec.blockOnError {
		b.WriteString("block_on_error ")
	}
	return b.String()
}

// ctr handles CTR: find or build the log and attach node n to it.
func (s *Server) ctr(sc *serverConn, h *Header, p []byte) ([]byte, error) {
	if h.UUID == "" {
		return nil, fmt.Errorf("%w: empty log UUID", dirtylog.ErrBadArgs)
	}
	sp, err := parseCtr(p)
	if err != nil {
		return nil, err
	}
	hl, err := s.findOrCreate(h.UUID, sp)
	if err != nil {
		return nil, err
	}
	if err := hl.join(h.LUID, sc); err != nil {
		return nil, err
	}
	sc.members[memberKey{h.UUID, h.LUID}] = hl
	if sp.dev != "" {
		return append([]byte(sp.dev), 0), nil // protocol v2+: the device name
	}
	return nil, nil
}

// creation is a log being built; CTRs for its UUID wait for it.
type creation struct {
	spec ctrSpec
	done chan struct{}
}

// findOrCreate returns the hosted log uuid, building it for sp if there is
// none. The backing log is built (its device opened and read) outside the
// server lock, so a slow or hung device holds up only the CTRs of that
// log, not the other logs, new connections or Close's bookkeeping.
func (s *Server) findOrCreate(uuid string, sp ctrSpec) (*hostedLog, error) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrServerClosed
		}
		if hl := s.logs[uuid]; hl != nil {
			s.mu.Unlock()
			if hl.spec.raw != sp.raw {
				return nil, fmt.Errorf("%w: log %s exists with CTR %q, not %q", dirtylog.ErrBadArgs, uuid, hl.spec.raw, sp.raw)
			}
			return hl, nil
		}
		if cr := s.creating[uuid]; cr != nil {
			s.mu.Unlock()
			if cr.spec.raw != sp.raw {
				return nil, fmt.Errorf("%w: log %s is being built with CTR %q, not %q", dirtylog.ErrBadArgs, uuid, cr.spec.raw, sp.raw)
			}
			select {
			case <-cr.done: // built (look again) or failed (try ourselves)
			case <-s.ctx.Done():
				return nil, ErrServerClosed
			}
			continue
		}
		if n := len(s.logs) + len(s.creating); n >= s.opts.MaxLogs {
			s.mu.Unlock()
			return nil, fmt.Errorf("%w: this server already hosts %d logs", dirtylog.ErrBadArgs, n)
		}
		if sp.dev != "" {
			// Two logs on one device would overwrite each other's bitmaps.
			for u, other := range s.logs {
				if other.spec.dev == sp.dev {
					s.mu.Unlock()
					return nil, fmt.Errorf("%w: log device %s already holds log %s", dirtylog.ErrBadArgs, sp.dev, u)
				}
			}
			for u, other := range s.creating {
				if other.spec.dev == sp.dev {
					s.mu.Unlock()
					return nil, fmt.Errorf("%w: log device %s is being used for log %s", dirtylog.ErrBadArgs, sp.dev, u)
				}
			}
		}
		cr := &creation{spec: sp, done: make(chan struct{})}
		s.creating[uuid] = cr
		s.mu.Unlock()

		hl, err := s.newHostedLog(uuid, sp)
		s.mu.Lock()
		delete(s.creating, uuid)
		if err == nil {
			// Even if the server closed meanwhile: Close collects the
			// logs only after every connection's goroutine, this one
			// included, has returned.
			s.logs[uuid] = hl
			s.log.Info("log created", "uuid", uuid, "ctr", sp.raw, "regions", hl.st.count, "sync_count", hl.st.syncCount)
		}
		close(cr.done)
		s.mu.Unlock()
		return hl, err
	}
}

// dtr handles DTR: node n leaves; the last member destroys the log. The
// backing log is closed under the server lock, so a CTR for the same UUID
// waits and then opens the device after the old log's last write.
func (s *Server) dtr(sc *serverConn, key memberKey, hl *hostedLog) error {
	delete(sc.members, key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !hl.leave(key.node) || s.logs[key.uuid] != hl {
		return nil
	}
	delete(s.logs, key.uuid)
	s.log.Info("log destroyed", "uuid", key.uuid)
	if err := hl.destroy(); err != nil && !errors.Is(err, dirtylog.ErrClosed) {
		return err
	}
	return nil
}
