package mirror

import (
	"bytes"
	"errors"
	"testing"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/testdev"
)

// A FUA write is durable on every leg when it returns: a power cut right
// after it keeps it on each of them.
func TestWriteAtFUASurvivesCrash(t *testing.T) {
	r := newRig(t, rigOpts{sync: dirtylog.NoSync, noFaulty: true})
	p := fill(6000, 'f')
	if n, err := r.m.WriteAtFUA(p, 3000); err != nil || n != len(p) {
		t.Fatalf("WriteAtFUA = %d, %v", n, err)
	}
	for i, l := range r.legs {
		l.Crash(testdev.CrashOptions{Mode: testdev.DropAll})
		if got := l.Bytes()[3000 : 3000+len(p)]; !bytes.Equal(got, p) {
			t.Fatalf("leg %d lost the FUA write in a crash (first difference at byte %d)", i, firstDiff(got, p))
		}
	}
	// A plain write is not synced: the same crash drops it (so the check
	// above can fail).
	q := fill(4096, 'p')
	if _, err := r.m.WriteAt(q, 32<<10); err != nil {
		t.Fatal(err)
	}
	r.legs[0].Crash(testdev.CrashOptions{Mode: testdev.DropAll})
	if bytes.Equal(r.legs[0].Bytes()[32<<10:36<<10], q) {
		t.Fatal("a plain write survived a drop-all crash: the rig does not test durability")
	}
}

// A leg whose sync fails after a FUA write is failed as if the write had
// failed: status D, the region out of sync, the write acknowledged because
// the other leg holds it durably.
func TestWriteAtFUALegSyncFails(t *testing.T) {
	r := newRig(t, rigOpts{sync: dirtylog.NoSync, opts: Options{NoResync: true}})
	r.faulty[1].Add(testdev.Rule{Label: "sync-dead", Op: testdev.OpSync})
	p := fill(4096, 's')
	if n, err := r.m.WriteAtFUA(p, 8192); err != nil || n != len(p) {
		t.Fatalf("WriteAtFUA = %d, %v; want success on the healthy leg", n, err)
	}
	if h := r.m.Stats().Health; h != "AD" {
		t.Fatalf("health %q, want AD (leg 1 failed as for a write error)", h)
	}
	if in, err := r.m.log.InSync(t.Context(), 2); err != nil || in {
		t.Fatalf("region 2 in sync = %v, %v; want out of sync after a leg's failed FUA sync", in, err)
	}
	if got := r.legs[0].DurableBytes()[8192:12288]; !bytes.Equal(got, p) {
		t.Fatal("the healthy leg does not hold the FUA write durably")
	}
	if r.faulty[0].Count(testdev.OpSync) == 0 {
		t.Fatal("leg 0 was not synced")
	}

	// Both legs' syncs failing: no leg holds it durably, the write fails.
	r2 := newRig(t, rigOpts{sync: dirtylog.NoSync, opts: Options{NoResync: true}})
	for _, f := range r2.faulty {
		f.Add(testdev.Rule{Label: "sync-dead", Op: testdev.OpSync})
	}
	if _, err := r2.m.WriteAtFUA(p, 0); !errors.Is(err, ErrIO) {
		t.Fatalf("WriteAtFUA with every leg's sync failing: %v, want ErrIO", err)
	}
}
