package mirror

import (
	"os"
	"slices"

	"github.com/dmlog/dmlog/internal/flock"
)

// lockLegs takes an exclusive advisory lock (flock) on every leg that is
// an *os.File (directly or at an offset), as the kernel claims a target's
// devices: a second opener of the same files gets an error wrapping
// flock.ErrInUse. It returns the files locked, to be unlocked on Close.
func lockLegs(legs []Leg, o *Options) ([]*os.File, error) {
	var locked []*os.File
	for i, l := range legs {
		f := legFile(l)
		if f == nil {
			continue
		}
		if err := flock.Lock(f, "mirror: "+o.legName(i)); err != nil {
			unlockAll(locked)
			return nil, err
		}
		locked = append(locked, f)
	}
	return locked, nil
}

// keepLocksLocked records f (if not nil) among the locked legs and
// unlocks the locked files no leg of the current leg set uses any more
// (a replaced leg's). m.mu must be held.
func (m *Mirror) keepLocksLocked(f *os.File) {
	if f != nil {
		m.locked = append(m.locked, f)
	}
	used := map[*os.File]bool{}
	for _, l := range m.cfg.Load().legs {
		if f := legFile(l.dev); f != nil {
			used[f] = true
		}
	}
	kept := m.locked[:0]
	for _, f := range m.locked {
		switch {
		case used[f]:
			kept = append(kept, f)
			used[f] = false // keep one entry per file
		case !slices.Contains(kept, f):
			_ = flock.Unlock(f)
		}
	}
	clear(m.locked[len(kept):])
	m.locked = kept
}

func unlockAll(fs []*os.File) {
	for _, f := range fs {
		_ = flock.Unlock(f)
	}
}
