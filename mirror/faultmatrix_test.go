package mirror

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/testdev"
)

// faultTrial runs a concurrent workload while seeded faults (EIO on read,
// write or sync of a random leg or of the log device) come and go, then
// heals the devices, resyncs and checks that the legs are identical and
// that every acknowledged write is there (or a later write of the same
// sector, possibly one that failed after reaching the default leg).
func faultTrial(seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 0xfa17))
	nlegs := 2 + rng.IntN(2)
	size := trialSize(rng)
	var mems []*testdev.Memory
	var fs []*testdev.Faulty
	var legs []Leg
	for range nlegs {
		mem := testdev.NewMemory(size)
		f := testdev.NewFaulty(mem)
		mems, fs, legs = append(mems, mem), append(fs, f), append(legs, f)
	}
	logMem := testdev.NewMemory(4096)
	logF := testdev.NewFaulty(logMem)
	all := append(append([]*testdev.Faulty(nil), fs...), logF)
	m, err := OpenDisk(legs, logF, dirtylog.Options{RegionSize: crashRegion, DeviceSize: size, Sync: dirtylog.NoSync},
		Options{ResyncRetry: time.Millisecond, ReadRepair: rng.IntN(2) == 0, ReadPolicy: ReadPolicy(rng.IntN(3)),
			ClearDelay: time.Duration(rng.IntN(2)) * time.Millisecond})
	if err != nil {
		return err
	}
	defer m.Close()
	h := &history{sectors: make([][]sectorWrite, size/crashSector)}
	const workers = 3
	per := int(size / crashSector / workers)
	var wg sync.WaitGroup
	var faultMu sync.Mutex
	ops := []testdev.Op{testdev.OpRead, testdev.OpWrite, testdev.OpSync}
	for g := range workers {
		wseed := rng.Uint64()
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(wseed, uint64(g)))
			lo, hi := g*per, (g+1)*per
			for k := range 40 {
				switch r.IntN(8) {
				case 0: // a fault appears
					faultMu.Lock()
					all[r.IntN(len(all))].Add(testdev.Rule{Label: "fault", Op: ops[r.IntN(3)], Nth: 1 + r.IntN(3)})
					faultMu.Unlock()
				case 1:
					_ = m.Sync()
				case 2:
					p := make([]byte, crashSector)
					_, _ = m.ReadAt(p, int64(r.IntN(int(size/crashSector)))*crashSector)
				}
				s := lo + r.IntN(hi-lo)
				cnt := min(1+r.IntN(3), hi-s)
				id := uint64(g+1)<<32 | uint64(k+1)
				h.write(m, id, s, cnt)
			}
		}()
	}
	wg.Wait()
	for _, f := range all {
		f.Clear()
	}
	// Legs that failed come back only through replacement (the kernel
	// needs a table reload); a leg that merely failed a read or sync is
	// replaced by itself, which makes it join and be recopied.
	c := m.cfg.Load()
	for i, l := range c.legs {
		if l.failed() && i != c.def {
			if err := m.ReplaceLeg(i, fs[i]); err != nil {
				return fmt.Errorf("replace leg %d: %w", i, err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.WaitInSync(ctx); err != nil {
		return fmt.Errorf("resync: %w (%s)", err, m.Status())
	}
	def := m.cfg.Load().def
	b0 := mems[def].Bytes()
	for i := range nlegs {
		if bi := mems[i].Bytes(); string(bi) != string(b0) {
			return fmt.Errorf("leg %d differs from default leg %d at byte %d (%s)", i, def, firstDiff(b0, bi), m.Status())
		}
	}
	for s, ws := range h.sectors {
		k := -1
		for j, w := range ws {
			if w.ack >= 0 {
				k = j
			}
		}
		sec := b0[s*crashSector : (s+1)*crashSector]
		ok := k < 0 && string(sec) == string(make([]byte, crashSector))
		for j := max(k, 0); j < len(ws) && !ok; j++ {
			ok = string(sec) == string(sectorImage(ws[j].id, s))
		}
		if !ok {
			return fmt.Errorf("sector %d lost an acknowledged write: holds %#x, history %v", s, binary.LittleEndian.Uint64(sec), ws)
		}
	}
	return nil
}

func TestFaultMatrix(t *testing.T) {
	trials := 300
	if os.Getenv("DMLOG_LONG") != "" {
		trials = 3000
	}
	base := matrixSeed(t, &trials)
	t.Logf("fault matrix: %d trials from seed %d (DMLOG_SEED=<seed> reruns one; DMLOG_TRIALS=<n> sets the count)", trials, base)
	for i := range uint64(trials) {
		if err := faultTrial(base + i); err != nil {
			t.Fatalf("trial seed %d: %v", base+i, err)
		}
	}
}
