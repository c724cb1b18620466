package mirror

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/testdev"
)

func memOpener(size int64) (Opener, map[string]*testdev.Memory) {
	devs := map[string]*testdev.Memory{}
	return func(name string) (Leg, error) {
		if strings.HasPrefix(name, "missing") {
			return nil, fmt.Errorf("no device %s", name)
		}
		d, ok := devs[name]
		if !ok {
			d = testdev.NewMemory(size)
			devs[name] = d
		}
		return d, nil
	}, devs
}

func TestParse(t *testing.T) {
	open, devs := memOpener(1 << 20)
	m, err := ParseWithOptions("mirror core 2 16 nosync 3 a 0 b 8 c 16 1 handle_errors", open, Options{Size: 512 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Table(); got != "core 2 16 nosync 3 a 0 b 8 c 16 1 handle_errors" {
		t.Fatalf("table %q", got)
	}
	if _, err := m.WriteAt([]byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	// Leg offsets are in sectors.
	if string(devs["b"].Bytes()[8*512:8*512+5]) != "hello" || string(devs["c"].Bytes()[16*512:16*512+5]) != "hello" {
		t.Fatal("leg offsets not applied")
	}
	_ = m.Close()
	// Size from the smallest leg.
	m, err = Parse("mirror core 1 16 2 a 0 b 1024", open)
	if err != nil {
		t.Fatal(err)
	}
	if m.Size() != (1<<20)-1024*512 {
		t.Fatalf("size %d", m.Size())
	}
	_ = m.Close()

	bad := []struct{ table, want string }{
		{"", "target type"},
		{"linear a 0", "expected"}, {"0 10 linear a 0", "target type"},
		{"mirror", "Insufficient mirror log"},
		{"mirror core 5 16", "Insufficient mirror log"},
		{"mirror core 1 16 1 a 0", "Invalid number of mirrors"},
		{"mirror core 1 16 10 a 0 b 0 c 0 d 0 e 0 f 0 g 0 h 0 i 0 j 0", "Invalid number of mirrors"},
		{"mirror core 1 16 2 a 0 b", "Too few mirror arguments"},
		{"mirror core 1 16 2 a 0 b x", "Invalid offset"},
		{"mirror core 1 16 2 a 0 b 0 1 frobnicate", "Unrecognised feature"},
		{"mirror core 1 16 2 a 0 b 0 1 keep_log", "requires the handle_errors"},
		{"mirror core 1 16 2 a 0 b 0 3 handle_errors", "Not enough arguments"},
		{"mirror core 1 16 2 a 0 b 0 1 handle_errors extra", "Too many mirror arguments"},
		{"mirror core 1 16 2 a 0 b 0 x", "Invalid number of features"},
		{"5 100 mirror core 1 16 2 a 0 b 0", "start sector"},
		{"0 0 mirror core 1 16 2 a 0 b 0", "invalid length"},
	}
	for _, c := range bad {
		_, err := Parse(c.table, open)
		if !errors.Is(err, ErrBadTable) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want ErrBadTable with %q", c.table, err, c.want)
		}
	}
	// Log errors are the log's.
	if _, err := Parse("0 2048 mirror core 1 1000 2 a 0 b 0", open); !errors.Is(err, dirtylog.ErrBadRegionSize) {
		t.Fatalf("bad region size: %v", err)
	}
	if _, err := Parse("0 2048 mirror core 1 16 2 a 0 missing 0", open); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing leg: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"0 32768 mirror disk 3 254:96 1024 nosync 2 254:64 0 254:80 0",
		"mirror core 1 16 2 a 0 b 0 1 handle_errors",
		"mirror core 2 16 sync 3 a 0 b 8 c 16 2 handle_errors keep_log",
		"0 40960 mirror disk 3 l 1024 sync 2 a 0 b 0",
		"mirror userspace 4 uuid clustered-disk l 1024 2 a 0 b 0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, table string) {
		open, _ := memOpener(64 << 10)
		m, err := ParseWithOptions(table, open, Options{Size: 32 << 10, NoResync: true})
		if err != nil {
			if !errors.Is(err, ErrBadTable) && !errors.Is(err, ErrBadLeg) && !errors.Is(err, dirtylog.ErrBadArgs) &&
				!errors.Is(err, dirtylog.ErrBadRegionSize) && !errors.Is(err, dirtylog.ErrUnknownType) &&
				!errors.Is(err, dirtylog.ErrLogDeviceTooSmall) && !strings.Contains(err.Error(), "opening") {
				t.Fatalf("Parse(%q): unexpected error %v", table, err)
			}
			return
		}
		defer m.Close()
		// What Parse accepted, Table prints back and Parse accepts again.
		if _, err := parseTable("mirror " + m.Table()); err != nil {
			t.Fatalf("Parse(%q) ok but its Table %q does not parse: %v", table, m.Table(), err)
		}
	})
}
