package dirtylog

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/dmlog/dmlog/internal/table"
)

// Env is what a log constructor needs beyond its table words. It is a
// plain value; New does not keep it, though the log may keep and call its
// callbacks.
type Env struct {
	// DeviceSize is the size in bytes of the device the log describes
	// (the kernel's ti->len).
	DeviceSize int64
	// Open resolves a device name from the table (disk logs). If the
	// returned device is an io.Closer, the log closes it on Close.
	Open func(name string) (Device, error)
	// FlushCallback and OnEvent are passed to the log's Options.
	FlushCallback func() error
	OnEvent       func(Event)
	// LogicalBlockSize is the log device's logical block size in bytes
	// (0 for 512).
	LogicalBlockSize int
	// Format and Resize are passed to a disk log's Options: the table has
	// no words for them (the kernel formats over anything and resizes
	// silently), so a caller that wants the kernel's rules says so here.
	Format, Resize bool
}

// Constructor builds a log from the words of a table line that follow the
// type name and argument count. New may call a registered Constructor from
// several goroutines at once, so it must be safe for concurrent use.
type Constructor func(args []string, env Env) (Log, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Constructor{}
)

// Register makes a log type available to New under name. Registering a
// name twice fails with ErrExists.
func Register(name string, ctor Constructor) error {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, ok := registry[name]; ok {
		return fmt.Errorf("%w: %q", ErrExists, name)
	}
	registry[name] = ctor
	return nil
}

// Types returns the registered type names, sorted.
func Types() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// New builds a log of the named type from its table arguments, e.g.
// New("disk", []string{"253:2", "1024", "nosync"}, env). As the kernel
// does, a name that is not registered is retried cut at its last '-'
// ("clustered-disk", then "clustered"). Errors carry the kernel's message
// and wrap ErrUnknownType, ErrBadArgs, ErrBadRegionSize or the
// constructor's error.
func New(name string, args []string, env Env) (Log, error) {
	registryMu.RLock()
	ctor, ok := registry[name]
	for n := name; !ok; {
		i := strings.LastIndexByte(n, '-')
		if i < 0 {
			break
		}
		n = n[:i]
		ctor, ok = registry[n]
	}
	registryMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownType, name)
	}
	return ctor(args, env)
}

func init() {
	_ = Register("core", newCoreFromArgs)
	_ = Register("disk", newDiskFromArgs)
}

// parseCommon parses "<region_size> [sync|nosync]" (in sectors) against
// the device size, with the kernel's checks and messages.
func parseCommon(args []string, devSize int64) (Options, error) {
	o := Options{DeviceSize: devSize}
	if len(args) > 1 {
		switch args[1] {
		case "sync":
			o.Sync = ForceSync
		case "nosync":
			o.Sync = NoSync
		default:
			return o, fmt.Errorf("%w: unrecognised sync argument to dirty region log: %s", ErrBadArgs, args[1])
		}
	}
	if devSize <= 0 {
		return o, fmt.Errorf("%w: Env.DeviceSize is %d bytes: want the positive size in bytes of the device the log describes",
			ErrBadOptions, devSize)
	}
	rs, ok := table.ParseUint(args[0], 32)
	lenSectors := uint64(devSize / SectorSize)
	if !ok || rs < 2 || rs > lenSectors || rs&(rs-1) != 0 {
		return o, fmt.Errorf("%w %s (in 512-byte sectors: want a power of two from 2 to the device's %d sectors)",
			ErrBadRegionSize, args[0], lenSectors)
	}
	o.RegionSize = int64(rs) * SectorSize
	return o, nil
}

func newCoreFromArgs(args []string, env Env) (Log, error) {
	if len(args) < 1 || len(args) > 2 {
		return nil, fmt.Errorf("%w: wrong number of arguments to dirty region log", ErrBadArgs)
	}
	o, err := parseCommon(args, env.DeviceSize)
	if err != nil {
		return nil, err
	}
	o.OnEvent = env.OnEvent
	return NewCore(o)
}

func newDiskFromArgs(args []string, env Env) (Log, error) {
	if len(args) < 2 || len(args) > 3 {
		return nil, fmt.Errorf("%w: wrong number of arguments to disk dirty region log", ErrBadArgs)
	}
	o, err := parseCommon(args[1:], env.DeviceSize)
	if err != nil {
		return nil, err
	}
	o.Name = args[0]
	o.FlushCallback = env.FlushCallback
	o.OnEvent = env.OnEvent
	o.LogicalBlockSize = env.LogicalBlockSize
	o.Format, o.Resize = env.Format, env.Resize
	if env.Open == nil {
		return nil, fmt.Errorf("%w: no opener to resolve log device %s", ErrBadArgs, args[0])
	}
	dev, err := env.Open(args[0])
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrOpenDevice, args[0], err)
	}
	d, err := OpenDisk(dev, o)
	if err != nil {
		if c, ok := dev.(interface{ Close() error }); ok {
			_ = c.Close()
		}
		return nil, err
	}
	d.closeDevice = true
	return d, nil
}
