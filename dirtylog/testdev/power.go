package testdev

import (
	"errors"
	"sync"
)

// ErrPowerCut is returned by every operation on a device after the Power
// it is on was cut.
var ErrPowerCut = errors.New("testdev: power cut")

// Power is a power switch shared by a set of devices (the legs and the
// log of a mirror, say). Cutting it is atomic with respect to every
// operation on them: each one either completes before the cut or fails
// with ErrPowerCut, so no device sees a write that another, cut earlier,
// did not. After Cut, call Crash on each Memory to decide what it kept.
// The zero Power is on. A Power is safe for concurrent use.
type Power struct {
	mu  sync.RWMutex
	off bool
}

// Cut switches the power off, after the operations in progress on its
// devices complete; every later one fails with ErrPowerCut.
func (p *Power) Cut() {
	p.mu.Lock()
	p.off = true
	p.mu.Unlock()
}

// Off reports whether Cut was called.
func (p *Power) Off() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.off
}

// Do runs f unless the power is off (then it returns ErrPowerCut), with
// Cut waiting for it: the building block of a device on this switch.
func (p *Power) Do(f func() error) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.off {
		return ErrPowerCut
	}
	return f()
}

// Device returns m on this power switch.
func (p *Power) Device(m *Memory) *Powered { return &Powered{p: p, m: m} }

// Powered is a Memory on a Power switch: its methods forward to the
// Memory until the power is cut, and fail with ErrPowerCut after. It is
// safe for concurrent use.
type Powered struct {
	p *Power
	m *Memory
}

// Memory returns the device behind d, to Crash or inspect it.
func (d *Powered) Memory() *Memory { return d.m }

// ReadAt reads from the Memory while the power is on.
func (d *Powered) ReadAt(b []byte, off int64) (n int, err error) {
	if e := d.p.Do(func() error { n, err = d.m.ReadAt(b, off); return nil }); e != nil {
		return 0, e
	}
	return n, err
}

// WriteAt writes to the Memory while the power is on.
func (d *Powered) WriteAt(b []byte, off int64) (n int, err error) {
	if e := d.p.Do(func() error { n, err = d.m.WriteAt(b, off); return nil }); e != nil {
		return 0, e
	}
	return n, err
}

// Sync syncs the Memory while the power is on.
func (d *Powered) Sync() error { return d.p.Do(d.m.Sync) }

// Discard discards on the Memory while the power is on.
func (d *Powered) Discard(off, n int64) error {
	return d.p.Do(func() error { return d.m.Discard(off, n) })
}

// Size is the Memory's size in bytes (known with the power off too).
func (d *Powered) Size() int64 { return d.m.Size() }
