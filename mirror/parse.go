package mirror

import (
	"fmt"
	"io"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/internal/table"
)

// Opener resolves a device name from a table line (a leg or the log
// device). Log devices must also have Sync() error. If the device is an
// io.Closer, the mirror closes it on Close. Parse calls it from its own
// goroutine, one device at a time. The devices it returns are used from
// many goroutines at once (parallel leg I/O), so they must be safe for
// concurrent ReadAt and WriteAt, as *os.File is.
type Opener func(name string) (Leg, error)

// Parse builds a mirror from a kernel table line:
//
//	[<start> <len>] mirror <log_type> <#log_args> <log_args>... <#legs> (<dev> <offset>)... [<#features> handle_errors [keep_log]]
//
// e.g. "mirror disk 2 253:2 1024 2 253:3 0 253:4 0 1 handle_errors".
// Offsets and lengths are in 512-byte sectors. Device names are resolved
// by open; each leg is addressed from its offset. The log is built by
// dirtylog.New with a flush callback that syncs every leg. The device size
// is <len> if given, else the smallest leg (its Size(), a file's length or
// a block device's size) less its offset; every leg whose size can be
// learned must hold it (ErrBadLeg names the leg, its size and the size
// needed). Legs opened as *os.File are locked as New locks them. Grammar
// and limits are the kernel's (2 to 9 legs, features as above); errors
// wrap ErrBadTable or the log's error. Parse is ParseWithOptions with zero
// Options.
func Parse(tableLine string, open Opener) (*Mirror, error) {
	return ParseWithOptions(tableLine, open, Options{})
}

// ParseWithOptions is Parse with Options for what the table line cannot
// say (read policy, resync rate, events, ...). o.Size is the device size
// in bytes when the line has no <start> <len>; o's Names, Offsets,
// HandleErrors, KeepLog and Syncer are taken from the table.
func ParseWithOptions(tableLine string, open Opener, o Options) (*Mirror, error) {
	if open == nil {
		return nil, fmt.Errorf("%w: nil opener", ErrBadTable)
	}
	t, err := parseTable(tableLine)
	if err != nil {
		return nil, err
	}
	o.HandleErrors, o.KeepLog = t.handleErrors, t.keepLog
	o.Names, o.Offsets = nil, nil

	var closers []func() error
	closeAll := func() {
		for _, c := range closers {
			_ = c()
		}
	}
	legs := make([]Leg, 0, len(t.legs))
	size := t.size
	if size == 0 {
		size = o.Size
	}
	fromLegs := size == 0
	for _, tl := range t.legs {
		dev, err := open(tl.name)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("mirror: opening leg %s: %w", tl.name, err)
		}
		if c, ok := dev.(io.Closer); ok {
			closers = append(closers, c.Close)
		}
		if fromLegs {
			s, known, err := legSize(dev)
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("%w: leg %s: %w", ErrBadLeg, tl.name, err)
			}
			if s -= tl.off; known && s > 0 && (size == 0 || s < size) {
				size = s
			}
		}
		legs = append(legs, offsetLeg(dev, tl.off))
		o.Names = append(o.Names, tl.name)
		o.Offsets = append(o.Offsets, tl.off)
	}
	if size <= 0 {
		closeAll()
		return nil, fmt.Errorf("%w: cannot tell the device size (give <start> <len> or Options.Size)", ErrBadTable)
	}
	o.Size = size
	s := new(LegsSyncer)
	o.Syncer = s
	env := dirtylog.Env{
		DeviceSize:    size,
		FlushCallback: s.Sync,
		Open: func(name string) (dirtylog.Device, error) {
			d, err := open(name)
			if err != nil {
				return nil, err
			}
			dd, ok := d.(dirtylog.Device)
			if !ok {
				if c, ok := d.(io.Closer); ok {
					_ = c.Close()
				}
				return nil, fmt.Errorf("%w: log device %s has no Sync method", ErrBadTable, name)
			}
			return dd, nil
		},
	}
	log, err := dirtylog.New(t.logType, t.logArgs, env)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("mirror: building %s log: %w", t.logType, err)
	}
	m, err := New(legs, log, o)
	if err != nil {
		_ = log.Close()
		closeAll()
		return nil, err
	}
	m.closers = closers
	return m, nil
}

// OpenDisk builds a mirror over legs with a disk log on logDev, wiring the
// log's flush callback to sync the legs. lo gives the log's geometry
// (RegionSize; DeviceSize defaults to o.Size, or with neither set to the
// shortest leg whose size can be learned) and mode; its FlushCallback is
// replaced. Legs are checked and locked as New does.
func OpenDisk(legs []Leg, logDev dirtylog.Device, lo dirtylog.Options, o Options) (*Mirror, error) {
	s := new(LegsSyncer)
	lo.FlushCallback = s.Sync
	if lo.DeviceSize == 0 {
		lo.DeviceSize = o.Size
	}
	if lo.DeviceSize == 0 {
		for i, l := range legs {
			if l == nil {
				return nil, fmt.Errorf("%w: leg %d is nil", ErrBadLeg, i)
			}
			sz, known, err := legSize(l)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %w", ErrBadLeg, o.legName(i), err)
			}
			if known && (lo.DeviceSize == 0 || sz < lo.DeviceSize) {
				lo.DeviceSize = sz
			}
		}
	}
	if o.Size == 0 {
		o.Size = lo.DeviceSize
	}
	log, err := dirtylog.OpenDisk(logDev, lo)
	if err != nil {
		return nil, err
	}
	o.Syncer = s
	m, err := New(legs, log, o)
	if err != nil {
		_ = log.Close()
		return nil, err
	}
	return m, nil
}

type tableLeg struct {
	name string
	off  int64
}

type parsedTable struct {
	size                  int64
	logType               string
	logArgs               []string
	legs                  []tableLeg
	handleErrors, keepLog bool
}

func badTable(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadTable}, a...)...)
}

// parseTable parses the words of a mirror table line.
func parseTable(line string) (*parsedTable, error) {
	if len(line) > 1<<16 {
		return nil, badTable("table line of %d bytes is too long", len(line))
	}
	w := table.Fields(line)
	t := &parsedTable{}
	if len(w) >= 2 && w[0] != "mirror" {
		start, ok1 := table.ParseUint(w[0], 64)
		length, ok2 := table.ParseUint(w[1], 64)
		if !ok1 || !ok2 {
			return nil, badTable("expected \"[<start> <len>] mirror ...\", got %q", truncate(line))
		}
		if start != 0 {
			return nil, badTable("start sector %d: a mirror is one target starting at 0", start)
		}
		if length == 0 || length > 1<<53/dirtylog.SectorSize {
			return nil, badTable("invalid length %d sectors", length)
		}
		t.size = int64(length) * dirtylog.SectorSize
		w = w[2:]
	}
	if len(w) == 0 || w[0] != "mirror" {
		return nil, badTable("target type is not mirror in %q", truncate(line))
	}
	w = w[1:]
	if len(w) < 2 {
		return nil, badTable("Insufficient mirror log arguments")
	}
	t.logType = w[0]
	nargs, ok := table.ParseUint(w[1], 32)
	if !ok || nargs > uint64(len(w)-2) {
		return nil, badTable("Insufficient mirror log arguments")
	}
	t.logArgs = append([]string(nil), w[2:2+nargs]...)
	w = w[2+nargs:]
	if len(w) < 1 {
		return nil, badTable("Invalid number of mirrors")
	}
	nlegs, ok := table.ParseUint(w[0], 32)
	if !ok || nlegs < 2 || nlegs > MaxLegs {
		return nil, badTable("Invalid number of mirrors")
	}
	w = w[1:]
	if uint64(len(w)) < 2*nlegs {
		return nil, badTable("Too few mirror arguments")
	}
	for i := uint64(0); i < nlegs; i++ {
		off, ok := table.ParseUint(w[1], 64)
		if !ok || off > 1<<53/dirtylog.SectorSize {
			return nil, badTable("Invalid offset %q for mirror device %s", w[1], w[0])
		}
		t.legs = append(t.legs, tableLeg{name: w[0], off: int64(off) * dirtylog.SectorSize})
		w = w[2:]
	}
	if len(w) > 0 {
		nf, ok := table.ParseUint(w[0], 32)
		if !ok {
			return nil, badTable("Invalid number of features")
		}
		w = w[1:]
		if nf > uint64(len(w)) {
			return nil, badTable("Not enough arguments to support feature count")
		}
		for _, f := range w[:nf] {
			switch f {
			case "handle_errors":
				t.handleErrors = true
			case "keep_log":
				t.keepLog = true
			default:
				return nil, badTable("Unrecognised feature requested")
			}
		}
		if t.keepLog && !t.handleErrors {
			return nil, badTable("keep_log feature requires the handle_errors feature")
		}
		w = w[nf:]
	}
	if len(w) > 0 {
		return nil, badTable("Too many mirror arguments")
	}
	return t, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// offLeg addresses a device from an offset, passing Sync through.
type offLeg struct {
	dev Leg
	off int64
}

func offsetLeg(dev Leg, off int64) Leg {
	if off == 0 {
		return dev
	}
	return &offLeg{dev: dev, off: off}
}

// ReadAt reads at off from the leg's start.
func (l *offLeg) ReadAt(p []byte, off int64) (int, error) { return l.dev.ReadAt(p, off+l.off) }

// WriteAt writes at off from the leg's start.
func (l *offLeg) WriteAt(p []byte, off int64) (int, error) { return l.dev.WriteAt(p, off+l.off) }

// Sync syncs the device if it can.
func (l *offLeg) Sync() error {
	if s, ok := l.dev.(syncer); ok {
		return s.Sync()
	}
	return nil
}
