package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/dmlog/dmlog/internal/fixture"
)

// rig is a mirror over in-memory legs with its devices.
type rig struct {
	m      *Mirror
	legs   []*testdev.Memory
	faulty []*testdev.Faulty
	logDev *testdev.Memory
	logF   *testdev.Faulty
}

type rigOpts struct {
	legs     int
	size     int64
	rs       int64
	disk     bool
	sync     dirtylog.SyncMode
	opts     Options
	noFaulty bool
}

func newRig(t testing.TB, ro rigOpts) *rig {
	t.Helper()
	if ro.legs == 0 {
		ro.legs = 2
	}
	if ro.size == 0 {
		ro.size = 64 << 10
	}
	if ro.rs == 0 {
		ro.rs = 4 << 10
	}
	r := &rig{}
	var legs []Leg
	for range ro.legs {
		mem := testdev.NewMemory(ro.size)
		r.legs = append(r.legs, mem)
		f := testdev.NewFaulty(mem)
		r.faulty = append(r.faulty, f)
		if ro.noFaulty {
			legs = append(legs, mem)
		} else {
			legs = append(legs, f)
		}
	}
	o := ro.opts
	o.Size = ro.size
	var err error
	lo := dirtylog.Options{RegionSize: ro.rs, DeviceSize: ro.size, Sync: ro.sync, Name: "log"}
	if ro.disk {
		r.logDev = testdev.NewMemory(1 << 20)
		r.logF = testdev.NewFaulty(r.logDev)
		r.m, err = OpenDisk(legs, r.logF, lo, o)
	} else {
		var log *dirtylog.Core
		log, err = dirtylog.NewCore(lo)
		if err == nil {
			r.m, err = New(legs, log, o)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.m.Close() })
	return r
}

func (r *rig) waitSync(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.m.WaitInSync(ctx); err != nil {
		t.Fatalf("WaitInSync: %v (status %s)", err, r.m.Status())
	}
}

func (r *rig) legsIdentical(t testing.TB) {
	t.Helper()
	b0 := r.legs[0].Bytes()
	for i := 1; i < len(r.legs); i++ {
		if bi := r.legs[i].Bytes(); !bytes.Equal(b0, bi) {
			t.Fatalf("leg %d differs from leg 0 at byte %d", i, firstDiff(b0, bi))
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func fill(n int, tag byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = tag + byte(i%7)
	}
	return p
}

// waitFor polls cond (for background effects with no event to wait on).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkNoLeak fails if goroutines started after base are still running.
func checkNoLeak(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutine leak: %d > %d\n%s", runtime.NumGoroutine(), base, buf[:n])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// manifest is testdata/mirror/manifest.json.
type manifest struct {
	Steps []struct {
		Type   string `json:"type"`
		Label  string `json:"label"`
		Output string `json:"output"`
		Table  string `json:"table"`
		File   string `json:"file"`
	} `json:"steps"`
}

func loadManifest(t *testing.T) *manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "mirror", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return &m
}

// kernelLine returns the dm-status or dm-table output for label, without
// the "<start> <len> mirror " prefix.
func (m *manifest) kernelLine(t *testing.T, typ, label string) string {
	t.Helper()
	for _, s := range m.Steps {
		if s.Type == typ && s.Label == label {
			f := strings.SplitN(s.Output, " ", 4)
			return f[3]
		}
	}
	t.Fatalf("no %s %s in manifest", typ, label)
	return ""
}

func readGz(t *testing.T, name string) []byte {
	return fixture.Gunzip(t, filepath.Join("..", "testdata", "mirror", name))
}
