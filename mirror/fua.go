package mirror

// WriteAtFUA writes p at off as WriteAt does, and makes it durable before
// it returns (a write with Force Unit Access, as an NBD or block-layer FUA
// request): every leg the write went to is synced (if the leg has a
// Sync() error method) right after its write, in parallel with the other
// legs, and the write is acknowledged only after those syncs. A leg whose
// sync fails is failed exactly as a leg whose write fails: it goes to
// status D, the regions go out of sync (degraded mode), and the write
// succeeds if a healthy leg holds it durably (errors as WriteAt's).
//
// In degraded mode the write is durable on the legs that took it: as in
// the kernel, a mirror reopened after a crash must not make a failed leg
// its default leg (replace it first), or the resync copies the failed
// leg's older data over it.
//
// WriteAtFUA does not flush writes acknowledged earlier to other ranges
// on purpose, but a leg's Sync usually does (as os.File.Sync does); use
// Sync for a full barrier.
func (m *Mirror) WriteAtFUA(p []byte, off int64) (int, error) {
	if err := m.checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := m.writeOrDiscard(p, off, int64(len(p)), true); err != nil {
		return 0, err
	}
	return len(p), nil
}
