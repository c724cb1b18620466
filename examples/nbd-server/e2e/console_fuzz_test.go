package e2e

import (
	"strings"
	"testing"
	"time"
)

func newParser() *guest {
	g := &guest{start: time.Now()}
	g.res.durables = map[string]fileInfo{}
	g.res.files = map[string]fileInfo{}
	g.res.steps = map[string]time.Duration{}
	return g
}

// TestParseConsole checks the parser of the guest's DMLOG lines on the
// lines the guest prints and on malformed ones.
func TestParseConsole(t *testing.T) {
	g := newParser()
	sum := strings.Repeat("ab", 32)
	for _, l := range []string{
		"durable d0/f1 12 " + sum,
		"file d0/f1 12 " + sum,
		"dir d0",
		"step mkfs ok start=1.5 end=4.25",
		"durable d0/f2 12 nothex",
		"file d0/f3 -1 " + sum,
		"file d0/f4 12",
		"fail mkfs",
		"end uptime=9.1",
	} {
		g.parse(l)
	}
	r := g.res
	if len(r.durable) != 1 || r.durables["d0/f1"] != (fileInfo{12, sum}) || r.files["d0/f1"] != (fileInfo{12, sum}) {
		t.Errorf("durable/file lines parsed as %v, %v, %v", r.durable, r.durables, r.files)
	}
	if len(r.files) != 1 || len(r.errors) != 3 {
		t.Errorf("malformed lines: files %v, errors %v (want 3 errors)", r.files, r.errors)
	}
	if r.steps["mkfs"] != 2750*time.Millisecond || r.fail != "fail mkfs" || !r.ended || len(r.dirs) != 1 {
		t.Errorf("parsed %+v", r)
	}
}

// FuzzParseConsole: whatever the console holds (kernel messages cut
// into the guest's lines, a broken guest), parsing never panics and only
// well-formed file lines are kept.
func FuzzParseConsole(f *testing.F) {
	f.Add("durable d0/f1 12 " + strings.Repeat("0", 64))
	f.Add("step workload ok start=2 end=x")
	f.Add("file a 1 2 3")
	f.Fuzz(func(t *testing.T, line string) {
		g := newParser()
		g.parse(line)
		for _, fi := range g.res.files {
			if !isSHA256(fi.sum) || fi.size < 0 {
				t.Fatalf("kept a malformed file line %q", line)
			}
		}
		for _, fi := range g.res.durables {
			if !isSHA256(fi.sum) || fi.size < 0 {
				t.Fatalf("kept a malformed durable line %q", line)
			}
		}
	})
}
