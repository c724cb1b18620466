package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/bits-and-blooms/bitset"
	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/internal/flock"
	"github.com/dmlog/dmlog/internal/nbd"
	"github.com/dmlog/dmlog/internal/units"
	"github.com/dmlog/dmlog/logwrites"
	"github.com/dmlog/dmlog/mirror"
)

// served is an opened backend: what to export, how to describe it, and
// how to shut it down (flush, close the log, close the files).
type served struct {
	export nbd.Export
	what   string
	mark   func(name string) error // nil unless recording
	status func() string
	close  func() error
}

// serveFile exports a plain file or block device.
func serveFile(path string, size int64) (*served, error) {
	d, _, err := openDev(path, "image", size)
	if err != nil {
		return nil, err
	}
	return &served{
		export: nbd.Export{Size: d.size, Dev: d, MultiConn: true},
		what:   fmt.Sprintf("file %s (%s)", path, units.FormatSize(d.size)),
		status: func() string { return "file " + path },
		close:  func() error { return errors.Join(d.Sync(), d.Close()) },
	}, nil
}

// recDev adapts a Recorder to the server: NBD_CMD_FLAG_FUA becomes a FUA
// entry (Sync a flush entry, Discard a discard entry, as the Recorder's own
// methods already do).
type recDev struct{ *logwrites.Recorder }

func (r recDev) WriteAtFUA(p []byte, off int64) (int, error) {
	return r.WriteAtFlags(p, off, logwrites.FUA)
}

// serveRecord exports dev through a Recorder logging to logPath, which
// must be new or empty unless overwrite is set.
func serveRecord(devPath, logPath string, size int64, sector int, overwrite bool) (*served, error) {
	d, created, err := openDev(devPath, "device", size)
	if err != nil {
		return nil, err
	}
	lf, err := os.OpenFile(logPath, os.O_RDWR, 0)
	logCreated := false
	if errors.Is(err, os.ErrNotExist) {
		lf, err = os.OpenFile(logPath, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		logCreated = err == nil
	}
	if err != nil {
		d.Close()
		if created {
			os.Remove(devPath)
		}
		return nil, fmt.Errorf("log: %w", err)
	}
	closeAll := func() { // undo this call: close, remove what it created
		lf.Close()
		d.Close()
		if created {
			os.Remove(devPath)
		}
		if logCreated {
			os.Remove(logPath)
		}
	}
	if err := flock.Lock(lf, "log"); err != nil {
		closeAll()
		return nil, err
	}
	if n, err := lf.Seek(0, io.SeekEnd); err != nil || (n > 0 && !overwrite) {
		closeAll()
		if err != nil {
			return nil, fmt.Errorf("log %s: %w", logPath, err)
		}
		return nil, fmt.Errorf("log %s already holds %d bytes; refusing to overwrite it (remove it, or pass -overwrite-log)", logPath, n)
	}
	if d.size%int64(sector) != 0 {
		closeAll()
		return nil, fmt.Errorf("device %s is %d bytes, not a multiple of the %d-byte sector", devPath, d.size, sector)
	}
	rec, err := logwrites.New(d, &fileDev{File: lf, fd: int(lf.Fd())}, logwrites.Options{SectorSize: sector, Durable: true})
	if err != nil {
		closeAll()
		return nil, err
	}
	return &served{
		export: nbd.Export{Size: d.size, Dev: recDev{rec}, MultiConn: true, MinBlock: uint32(sector), PreferredBlock: uint32(max(sector, 4096))},
		what:   fmt.Sprintf("device %s (%s) recorded to log %s (%d-byte sectors)", devPath, units.FormatSize(d.size), logPath, sector),
		mark:   rec.Mark,
		status: func() string { return "log-writes " + rec.Status() },
		close: func() error {
			err := rec.Close()
			return errors.Join(err, d.Sync(), lf.Sync(), lf.Close(), d.Close())
		},
	}, nil
}

// serveMirror exports a Mirror over the leg files with a disk log at
// logPath: a new log is created (no resync if the legs were created now,
// a full resync from the first leg otherwise); an existing log must be a
// disk log of the same geometry and is trusted (the regions it marks dirty
// are resynced, with progress printed to out).
func serveMirror(legPaths []string, logPath string, size, region int64, out io.Writer) (_ *served, err error) {
	var legs []*fileDev
	var made []string // legs created by this call, removed if it fails
	allNew := true
	defer func() {
		if err != nil {
			for _, l := range legs {
				l.Close()
			}
			for _, p := range made {
				os.Remove(p)
			}
		}
	}()
	for i, p := range legPaths {
		d, created, err := openDev(p, fmt.Sprintf("leg %d", i+1), size)
		if err != nil {
			return nil, err
		}
		legs = append(legs, d)
		if created {
			made = append(made, p)
		}
		allNew = allNew && created
	}
	if size == 0 {
		size = legs[0].size
	}
	for i, l := range legs {
		if l.size < size {
			return nil, fmt.Errorf("leg %d %s is %d bytes, smaller than the mirror (%d bytes)", i+1, legPaths[i], l.size, size)
		}
	}
	nregions := uint64((size + region - 1) / region)
	logSize := int64(len(dirtylog.EncodeDiskImage(nregions, bitset.New(uint(nregions)), 512)))

	lf, err := os.OpenFile(logPath, os.O_RDWR, 0)
	newLog := errors.Is(err, os.ErrNotExist)
	if newLog {
		lf, err = os.OpenFile(logPath, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	defer func() {
		if err != nil {
			lf.Close()
			if newLog {
				os.Remove(logPath)
			}
		}
	}()
	if err := flock.Lock(lf, "log"); err != nil {
		return nil, err
	}
	mode := dirtylog.DefaultSync
	switch {
	case newLog:
		if err := lf.Truncate(logSize); err != nil {
			return nil, fmt.Errorf("log %s: %w", logPath, err)
		}
		mode = dirtylog.ForceSync
		if allNew {
			mode = dirtylog.NoSync
			fmt.Fprintf(out, "nbd-server: new mirror: legs and log created, nothing to resync\n")
		} else {
			fmt.Fprintf(out, "nbd-server: new log for existing legs: full resync from %s\n", legPaths[0])
		}
	default:
		n, err := lf.Seek(0, io.SeekEnd)
		if err != nil {
			return nil, fmt.Errorf("log %s: %w", logPath, err)
		}
		img, err := dirtylog.ReadDiskImage(lf, n)
		if err != nil {
			return nil, fmt.Errorf("log %s exists and is not a dm disk log (%w); refusing to overwrite it", logPath, err)
		}
		if img.Header.NrRegions != nregions {
			return nil, fmt.Errorf("log %s covers %d regions, but a %d-byte mirror of %s regions has %d: wrong -region or -size?",
				logPath, img.Header.NrRegions, size, units.FormatSize(region), nregions)
		}
		if dirty := len(img.Dirty()); dirty > 0 {
			fmt.Fprintf(out, "nbd-server: log marks %d of %d regions dirty (the last run did not stop cleanly): resyncing them from %s\n", dirty, nregions, legPaths[0])
		} else {
			fmt.Fprintf(out, "nbd-server: log is clean: nothing to resync\n")
		}
	}
	names := make([]string, len(legPaths))
	mlegs := make([]mirror.Leg, len(legs))
	for i, l := range legs {
		names[i], mlegs[i] = legPaths[i], l
	}
	prog := &progress{out: out}
	m, err := mirror.OpenDisk(mlegs, &fileDev{File: lf, fd: int(lf.Fd())},
		dirtylog.Options{RegionSize: region, DeviceSize: size, Sync: mode, Name: logPath},
		mirror.Options{Size: size, Names: names, OnProgress: prog.report, OnEvent: func(e mirror.Event) {
			fmt.Fprintf(out, "nbd-server: mirror event: %v\n", e)
		}})
	if err != nil {
		return nil, err
	}
	return &served{
		export: nbd.Export{Size: size, Dev: m, MultiConn: true},
		what: fmt.Sprintf("mirror of %s (%s, %s regions, disk log %s)", strings.Join(legPaths, ","),
			units.FormatSize(size), units.FormatSize(region), logPath),
		status: func() string { return "mirror " + m.Status() },
		close: func() error {
			err := m.Close()
			for _, l := range legs {
				err = errors.Join(err, l.Close())
			}
			return errors.Join(err, lf.Close())
		},
	}, nil
}

// progress prints resync progress at most once a second, and at the end.
type progress struct {
	out  io.Writer
	mu   sync.Mutex
	last time.Time
	done bool
}

func (p *progress) report(pr mirror.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done || (!pr.Done && time.Since(p.last) < time.Second) {
		return
	}
	p.last, p.done = time.Now(), pr.Done
	if pr.Done {
		fmt.Fprintf(p.out, "nbd-server: resync done: %d/%d regions in sync, %s copied\n", pr.InSync, pr.Total, units.FormatSize(pr.Copied))
		return
	}
	fmt.Fprintf(p.out, "nbd-server: resync: %d/%d regions in sync, %.1f MiB/s, ETA %v\n", pr.InSync, pr.Total,
		pr.BytesPerSec/(1<<20), pr.ETA.Round(100*time.Millisecond))
}
