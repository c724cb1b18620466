package etcdlog

import (
	"fmt"
	"strings"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
)

// DefaultLeaseTTL is the liveness lease used when Options.LeaseTTL is zero.
const DefaultLeaseTTL = 10 * time.Second

// DefaultPrefix is the key prefix used when Options.Prefix is empty.
const DefaultPrefix = "/dirtylog/"

// Options configures one node's view of a clustered log. It is a plain
// value: Open copies it, and the callbacks it holds may be called from
// the Log's goroutines.
type Options struct {
	// Name names the log: every node of one mirror opens the same Name.
	// It must be non-empty, at most 128 bytes, without '/' or spaces.
	Name string
	// Node names this node, unique among the nodes sharing the log (a
	// host name, say). Same rules as Name. A restarted node should reuse
	// its id: it then converts its own leftover marks into resync work
	// at Open instead of waiting for another node's janitor.
	Node string
	// RegionSize is the region size in bytes: a power of two, at least
	// 1024 bytes and at most DeviceSize bytes, and large enough that the
	// device has at most MaxRegions regions.
	RegionSize int64
	// DeviceSize is the size in bytes of the device the log describes
	// (required).
	DeviceSize int64
	// Sync is the start-up mode. It applies only when the log is created
	// in etcd (DefaultSync and ForceSync: every region out of sync;
	// NoSync: every region in sync). Opening an existing log keeps its
	// state, as cmirrord does, so a node joining a running cluster can
	// never reset it.
	Sync dirtylog.SyncMode
	// LeaseTTL is the liveness lease: a node that cannot renew it for this
	// long is fenced and its marks become resync work. Rounded up to whole
	// seconds; at least one second (etcd raises it to its own minimum,
	// 1.5 election timeouts). Zero means DefaultLeaseTTL.
	LeaseTTL time.Duration
	// Prefix is the etcd key prefix under which logs live; the log's keys
	// are Prefix+Name+"/...". Zero means DefaultPrefix.
	Prefix string
	// RequestTimeout bounds the etcd requests made by calls that take no
	// context (SetRegionSync, Close). Zero means 5 s.
	RequestTimeout time.Duration
	// FlushCallback, if set, is called by Flush before it commits clears,
	// so data is durable on every leg before a region is recorded clean.
	// If it fails, every region of this node is treated as dirty from
	// then on and clears are ignored (as the disk log does).
	FlushCallback func() error
	// OnEvent, if set, receives EventLogFailed when this node is first
	// fenced and EventFlushCallbackFailed. It is called synchronously and
	// must not call back into the log.
	OnEvent func(dirtylog.Event)
}

// maxChunks bounds the number of chunks a log is split into, so a flush or
// a janitor transaction stays well within etcd's default 128 operations.
const maxChunks = 32

// minChunkRegions is the smallest chunk: 32 Ki regions, a 4 KiB bitmap.
const minChunkRegions = 32 << 10

// maxChunkRegions is the largest chunk: 128 Ki regions, a 16 KiB bitmap.
// The longest transaction, a flush that rewrites every chunk of this
// node's marks and every pristine chunk, then carries 2*maxChunks values
// of at most 16 KiB + 1 byte: about 1 MiB, under etcd's default request
// limit of 1.5 MiB (--max-request-bytes).
const maxChunkRegions = 128 << 10

// MaxRegions is the largest region count a log can have: maxChunks chunks
// of 128 Ki regions, so that every transaction stays within etcd's default
// limits whatever the marks. A larger device needs a larger region size.
const MaxRegions = maxChunks * maxChunkRegions

func validID(what, s string) error {
	if s == "" || len(s) > 128 || strings.ContainsAny(s, "/ \t\n\r\x00") {
		return fmt.Errorf("%w: %s %q must be 1 to 128 bytes without '/' or spaces", ErrBadOptions, what, s)
	}
	return nil
}

// geometry validates o and returns the region count and chunk size.
func (o *Options) geometry() (count, chunk uint64, err error) {
	if err := validID("Name", o.Name); err != nil {
		return 0, 0, err
	}
	if err := validID("Node", o.Node); err != nil {
		return 0, 0, err
	}
	rs, ds := o.RegionSize, o.DeviceSize
	switch {
	case ds == 0:
		return 0, 0, fmt.Errorf("%w: Options.DeviceSize is missing (0 bytes): set it to the size in bytes of the device the log describes",
			ErrBadOptions)
	case ds < 0:
		return 0, 0, fmt.Errorf("%w: Options.DeviceSize is %d bytes: want the positive size in bytes of the device the log describes",
			ErrBadOptions, ds)
	}
	if rs < 2*dirtylog.SectorSize || rs&(rs-1) != 0 || rs > ds {
		return 0, 0, fmt.Errorf("%w: Options.RegionSize is %d bytes: want a power of two of at least %d bytes and at most Options.DeviceSize (%d bytes)",
			dirtylog.ErrBadRegionSize, rs, 2*dirtylog.SectorSize, ds)
	}
	count = uint64((ds + rs - 1) / rs)
	if count > MaxRegions {
		need := rs
		for uint64((ds+need-1)/need) > MaxRegions {
			need *= 2
		}
		return 0, 0, fmt.Errorf("%w: %d regions of %d bytes is more than %d (MaxRegions); use a region size of at least %d bytes",
			dirtylog.ErrBadRegionSize, count, rs, MaxRegions, need)
	}
	return count, chunkRegionsFor(count), nil
}

// chunkRegionsFor picks the chunk size for a log of count regions (at most
// MaxRegions): 32 Ki regions, or the power of two that keeps the chunk
// count at maxChunks.
func chunkRegionsFor(count uint64) uint64 {
	c := uint64(minChunkRegions)
	for (count+c-1)/c > maxChunks {
		c *= 2
	}
	return c
}

func (o *Options) leaseSeconds() int {
	ttl := o.LeaseTTL
	if ttl == 0 {
		ttl = DefaultLeaseTTL
	}
	s := int((ttl + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

func (o *Options) prefix() string {
	p := o.Prefix
	if p == "" {
		p = DefaultPrefix
	}
	return p + o.Name + "/"
}

func (o *Options) requestTimeout() time.Duration {
	if o.RequestTimeout <= 0 {
		return 5 * time.Second
	}
	return o.RequestTimeout
}
