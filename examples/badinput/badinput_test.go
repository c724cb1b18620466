package badinput

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/remote"
	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/dmlog/dmlog/logwrites"
	"github.com/dmlog/dmlog/mirror"
)

// pending lists the cases that depend on library fixes of issue 11 made on
// other branches. A pending case still runs: if it fails, the test logs
// "PENDING" with the reason and goes on; if it passes, the test fails so
// that the case is taken off this list. Empty it as the fixes merge.
var pending = map[string]string{}

// commands are the example commands, built once by TestMain: name -> path
// of the binary, or the build error.
var (
	commands  = map[string]string{}
	buildErrs = map[string]error{}
)

func TestMain(m *testing.M) {
	bin, err := os.MkdirTemp("", "dmlog-badinput-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildCommands(bin)
	code := m.Run()
	os.RemoveAll(bin)
	os.Exit(code)
}

// buildCommands builds every directory of examples/ that holds a main.go
// (each on its own, so that one that does not build fails only its cases).
// examples/cluster is a nested module: the workspace (go.work) builds it.
func buildCommands(bin string) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	ents, err := os.ReadDir("..")
	if err != nil {
		buildErrs["*"] = err
		return
	}
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join("..", e.Name(), "main.go")); !e.IsDir() || err != nil {
			continue
		}
		out := filepath.Join(bin, e.Name())
		cmd := exec.Command(goTool, "build", "-o", out, ".")
		cmd.Dir = filepath.Join("..", e.Name())
		if msg, err := cmd.CombinedOutput(); err != nil {
			buildErrs[e.Name()] = fmt.Errorf("go build %s: %v\n%s", e.Name(), err, msg)
			continue
		}
		commands[e.Name()] = out
	}
}

// runCase runs one case in a fresh directory. f returns nil for the right
// behaviour and an error describing the wrong one; it may t.Fatal for a
// failure of the test's own setup.
func runCase(t *testing.T, name string, f func(t *testing.T, dir string) error) {
	t.Run(name, func(t *testing.T) {
		err := f(t, t.TempDir())
		why, isPending := pending[name]
		switch {
		case isPending && err != nil:
			t.Logf("PENDING %s — waits for %s; today: %v", name, why, err)
		case isPending:
			t.Errorf("%s passes now: remove it from the pending list (%s)", name, why)
		case err != nil:
			t.Error(err)
		}
	})
}

// clearError checks that err is a clear error: non-nil, one non-empty line.
func clearError(what string, err error) error {
	switch {
	case err == nil:
		return fmt.Errorf("%s was accepted; want an error", what)
	case strings.TrimSpace(err.Error()) == "":
		return fmt.Errorf("%s: empty error message", what)
	case strings.Contains(strings.TrimRight(err.Error(), "\n"), "\n"):
		return fmt.Errorf("%s: error of more than one line: %q", what, err.Error())
	}
	return nil
}

// oneLine checks that s (a command's stderr) is one non-empty line.
func oneLine(s string) error {
	s = strings.TrimRight(s, "\n")
	switch {
	case strings.TrimSpace(s) == "":
		return errors.New("nothing on stderr; want one line saying what is wrong")
	case strings.Contains(s, "\n"):
		return fmt.Errorf("stderr has %d lines; want one:\n%s", strings.Count(s, "\n")+1, s)
	}
	return nil
}

// guard holds the sha256 of files that are not the library's own.
type guard map[string][32]byte

func guardFiles(t *testing.T, paths ...string) guard {
	t.Helper()
	g := guard{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		g[p] = sha256.Sum256(b)
	}
	return g
}

// changed reports every guarded file whose contents changed or that is gone.
func (g guard) changed() error {
	var errs []error
	for p, sum := range g {
		b, err := os.ReadFile(p)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w (it was there before)", filepath.Base(p), err))
		case sha256.Sum256(b) != sum:
			errs = append(errs, fmt.Errorf("%s changed (sha256 %x, was %x)", filepath.Base(p), sha256.Sum256(b), sum))
		}
	}
	return errors.Join(errs...)
}

// writeFile creates path with n bytes: random ones from a fixed seed, or
// zeroes.
func writeFile(t *testing.T, path string, n int, random bool) string {
	t.Helper()
	b := make([]byte, n)
	if random {
		rng := rand.New(rand.NewPCG(11, uint64(n)))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func openRW(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// within runs f, giving up after d: a case whose library call hangs fails
// instead of hanging the test (the goroutine is left behind).
func within(d time.Duration, what string, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		return fmt.Errorf("%s did not return within %v", what, d)
	}
}

const (
	devSize    = 1 << 20
	regionSize = 64 << 10
	logBytes   = 8 << 10 // room for the header and bitmap of 16 regions
)

func diskOpts(region int64) dirtylog.Options {
	return dirtylog.Options{RegionSize: region, DeviceSize: devSize}
}

func TestLibrary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	runCase(t, "reopen-wrong-region-size", func(t *testing.T, dir string) error {
		p := writeFile(t, filepath.Join(dir, "log.img"), logBytes, false)
		d, err := dirtylog.OpenDisk(openRW(t, p), diskOpts(regionSize))
		if err != nil {
			t.Fatal(err)
		}
		d.MarkRegion(3)
		if err := errors.Join(d.Flush(ctx), d.Close()); err != nil {
			t.Fatal(err)
		}
		g := guardFiles(t, p) // the log holds a crash's dirty region: keep it
		d2, err := dirtylog.OpenDisk(openRW(t, p), diskOpts(regionSize/2))
		if err == nil {
			d2.Close()
		}
		return errors.Join(clearError("reopening a 16-region log with 32 regions", err), g.changed())
	})

	runCase(t, "short-leg-new", func(t *testing.T, dir string) error {
		p0 := writeFile(t, filepath.Join(dir, "leg0"), devSize, true)
		p1 := writeFile(t, filepath.Join(dir, "leg1"), devSize/2, true)
		g := guardFiles(t, p0, p1)
		l, err := dirtylog.NewCore(diskOpts(regionSize))
		if err != nil {
			t.Fatal(err)
		}
		m, err := mirror.New([]mirror.Leg{openRW(t, p0), openRW(t, p1)}, l, mirror.Options{Size: devSize})
		if err == nil {
			err = nil
			_ = within(10*time.Second, "Close", m.Close)
		}
		return errors.Join(clearError("mirror.New with a 1MiB mirror on a 512KiB leg", err), g.changed())
	})

	runCase(t, "short-leg-parse", func(t *testing.T, dir string) error {
		p0 := writeFile(t, filepath.Join(dir, "leg0"), devSize, true)
		p1 := writeFile(t, filepath.Join(dir, "leg1"), devSize/2, true)
		g := guardFiles(t, p0, p1)
		open := func(name string) (mirror.Leg, error) { return os.OpenFile(filepath.Join(dir, name), os.O_RDWR, 0) }
		m, err := mirror.Parse(fmt.Sprintf("0 %d mirror core 1 %d 2 leg0 0 leg1 0", devSize/512, regionSize/512), open)
		if err == nil {
			_ = within(10*time.Second, "Close", m.Close)
		}
		return errors.Join(clearError("mirror.Parse with a 1MiB table on a 512KiB leg", err), g.changed())
	})

	runCase(t, "short-leg-size-zero-rounded", func(t *testing.T, dir string) error {
		// 1MiB less 1KiB legs, a log of 16 whole 64KiB regions, Size 0:
		// the mirror must not claim the 16th region's missing 1KiB.
		p0 := writeFile(t, filepath.Join(dir, "leg0"), devSize-1024, true)
		p1 := writeFile(t, filepath.Join(dir, "leg1"), devSize-1024, true)
		g := guardFiles(t, p0, p1)
		l, err := dirtylog.NewCore(dirtylog.Options{RegionSize: regionSize, DeviceSize: devSize, Sync: dirtylog.NoSync})
		if err != nil {
			t.Fatal(err)
		}
		m, err := mirror.New([]mirror.Leg{openRW(t, p0), openRW(t, p1)}, l, mirror.Options{})
		if err != nil {
			return errors.Join(clearError("mirror.New on legs shorter than the log", err), g.changed())
		}
		size := m.Stats().Regions * uint64(regionSize)
		_, werr := m.WriteAt(make([]byte, 1024), devSize-1024)
		_ = within(10*time.Second, "Close", m.Close)
		if werr == nil {
			return fmt.Errorf("a write past the legs' end succeeded (the mirror took Size %d from the log)", size)
		}
		return nil
	})

	runCase(t, "data-file-as-disk-log", func(t *testing.T, dir string) error {
		p := writeFile(t, filepath.Join(dir, "data.img"), 64<<10, true)
		g := guardFiles(t, p)
		d, err := dirtylog.OpenDisk(openRW(t, p), diskOpts(regionSize))
		if err == nil {
			d.Close()
		}
		return errors.Join(clearError("OpenDisk on a file of data", err), g.changed())
	})

	runCase(t, "data-file-as-logwrites-log", func(t *testing.T, dir string) error {
		p := writeFile(t, filepath.Join(dir, "data.img"), 1<<20, true)
		g := guardFiles(t, p)
		r, err := logwrites.New(testdev.NewMemory(devSize), openRW(t, p), logwrites.Options{})
		if err == nil {
			r.Close()
		}
		return errors.Join(clearError("logwrites.New over a file of data", err), g.changed())
	})

	runCase(t, "existing-logwrites-log", func(t *testing.T, dir string) error {
		p := writeFile(t, filepath.Join(dir, "log.img"), 0, false)
		r, err := logwrites.New(testdev.NewMemory(devSize), openRW(t, p), logwrites.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.WriteAt(bytes.Repeat([]byte{7}, 4096), 0); err != nil {
			t.Fatal(err)
		}
		if err := errors.Join(r.Mark("precious"), r.Close()); err != nil {
			t.Fatal(err)
		}
		g := guardFiles(t, p)
		r, err = logwrites.New(testdev.NewMemory(devSize), openRW(t, p), logwrites.Options{})
		if err == nil {
			r.Close()
		}
		return errors.Join(clearError("logwrites.New over a recorded log", err), g.changed())
	})

	runCase(t, "live-socket", func(t *testing.T, dir string) error {
		p := filepath.Join(dir, "s")
		l, err := remote.ListenUnix(p)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		l2, err := remote.ListenUnix(p)
		if err == nil {
			l2.Close()
		}
		cerr := clearError("a second ListenUnix on a live socket", err)
		c, derr := net.Dial("unix", p)
		if derr != nil {
			return errors.Join(cerr, fmt.Errorf("the first server no longer answers: %w", derr))
		}
		c.Close()
		return cerr
	})

	runCase(t, "stale-socket", func(t *testing.T, dir string) error {
		p := filepath.Join(dir, "s")
		ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ul.SetUnlinkOnClose(false)
		ul.Close() // a crashed server's socket: the file stays, no one answers
		l, err := remote.ListenUnix(p)
		if err != nil {
			return fmt.Errorf("ListenUnix on a stale socket: %v; want it replaced", err)
		}
		return l.Close()
	})

	runCase(t, "regular-file-at-socket-path", func(t *testing.T, dir string) error {
		p := writeFile(t, filepath.Join(dir, "s"), 64<<10, true)
		g := guardFiles(t, p)
		l, err := remote.ListenUnix(p)
		if err == nil {
			l.Close()
		}
		return errors.Join(clearError("ListenUnix on a regular file", err), g.changed())
	})

	runCase(t, "two-openers-disk-log", func(t *testing.T, dir string) error {
		p := writeFile(t, filepath.Join(dir, "log.img"), logBytes, false)
		d, err := dirtylog.OpenDisk(openRW(t, p), diskOpts(regionSize))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		d2, err := dirtylog.OpenDisk(openRW(t, p), diskOpts(regionSize))
		if err == nil {
			d2.Close()
		}
		return clearError("a second OpenDisk of the same file", err)
	})

	mirrorFiles := func(t *testing.T, dir string) (table string, open mirror.Opener) {
		writeFile(t, filepath.Join(dir, "leg0"), devSize, false)
		writeFile(t, filepath.Join(dir, "leg1"), devSize, false)
		writeFile(t, filepath.Join(dir, "log"), logBytes, false)
		table = fmt.Sprintf("0 %d mirror disk 3 log %d nosync 2 leg0 0 leg1 0", devSize/512, regionSize/512)
		open = func(name string) (mirror.Leg, error) { return os.OpenFile(filepath.Join(dir, name), os.O_RDWR, 0) }
		return table, open
	}

	runCase(t, "two-openers-mirror-parse", func(t *testing.T, dir string) error {
		table, open := mirrorFiles(t, dir)
		m, err := mirror.Parse(table, open)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		m2, err := mirror.Parse(table, open)
		if err == nil {
			_ = within(10*time.Second, "Close", m2.Close)
		}
		return clearError("a second mirror.Parse of the same files", err)
	})

	runCase(t, "two-openers-same-leg-files", func(t *testing.T, dir string) error {
		table, open := mirrorFiles(t, dir)
		m, err := mirror.Parse(table, open)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		// Another mirror with its own log but the same legs.
		l, err := dirtylog.NewCore(diskOpts(regionSize))
		if err != nil {
			t.Fatal(err)
		}
		f0, err0 := open("leg0")
		f1, err1 := open("leg1")
		if err := errors.Join(err0, err1); err != nil {
			t.Fatal(err)
		}
		defer f0.(io.Closer).Close()
		defer f1.(io.Closer).Close()
		m2, err := mirror.New([]mirror.Leg{f0, f1}, l, mirror.Options{Size: devSize})
		if err == nil {
			_ = within(10*time.Second, "Close", m2.Close)
		}
		return clearError("mirror.New on the legs of a running mirror", err)
	})

	runCase(t, "empty-log-file", func(t *testing.T, dir string) error {
		p := writeFile(t, filepath.Join(dir, "log.img"), 0, false)
		d, err := dirtylog.OpenDisk(openRW(t, p), diskOpts(regionSize))
		if err != nil {
			return fmt.Errorf("OpenDisk on an empty file: %v; want the file grown to the log's size", err)
		}
		d.MarkRegion(5)
		if err := errors.Join(d.Flush(ctx), d.Close()); err != nil {
			return err
		}
		d, err = dirtylog.OpenDisk(openRW(t, p), diskOpts(regionSize))
		if err != nil {
			return fmt.Errorf("reopening the grown log: %w", err)
		}
		defer d.Close()
		if clean, err := d.IsClean(ctx, 5); err != nil || clean {
			return fmt.Errorf("region 5 after reopening: clean %v, %v; want dirty", clean, err)
		}
		return nil
	})

	runCase(t, "partial-last-region", func(t *testing.T, dir string) error {
		// 10 regions of 4KiB and a last one of 2KiB; the legs differ only
		// in the partial region; "sync" resyncs every region.
		const size, region = 10*4096 + 2048, 4096
		p0 := writeFile(t, filepath.Join(dir, "leg0"), size, true)
		p1 := writeFile(t, filepath.Join(dir, "leg1"), size, false)
		b, err := os.ReadFile(p0)
		if err != nil {
			t.Fatal(err)
		}
		copy(b[size-2048:], make([]byte, 2048))
		if err := os.WriteFile(p1, b, 0o600); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "log"), 4096, false)
		g := guardFiles(t, p0) // the default leg is the resync's source
		open := func(name string) (mirror.Leg, error) { return os.OpenFile(filepath.Join(dir, name), os.O_RDWR, 0) }
		m, err := mirror.Parse(fmt.Sprintf("0 %d mirror disk 3 log %d sync 2 leg0 0 leg1 0", size/512, region/512), open)
		if err != nil {
			return fmt.Errorf("mirror with a partial last region: %w", err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		if err := m.WaitInSync(wctx); err != nil {
			_ = within(10*time.Second, "Close", m.Close)
			return fmt.Errorf("resync of a mirror with a partial last region did not finish: %v (status %s)", err, m.Status())
		}
		st := m.Stats()
		res, verr := m.Verify(wctx, false)
		if err := errors.Join(verr, within(10*time.Second, "Close", m.Close)); err != nil {
			return err
		}
		a, _ := os.ReadFile(p0)
		c, _ := os.ReadFile(p1)
		switch {
		case st.Regions != 11 || st.InSync != 11:
			return fmt.Errorf("%d/%d regions in sync; want 11/11", st.InSync, st.Regions)
		case len(res.Mismatched) != 0 || !bytes.Equal(a, c):
			return fmt.Errorf("legs differ after resync (verify: %d mismatched)", len(res.Mismatched))
		}
		return g.changed()
	})
}

// cmd runs a built example command and returns its exit status and output.
// A command still running after two minutes is killed and fails the test.
func cmd(t *testing.T, name string, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	bin, ok := commands[name]
	if !ok {
		t.Fatalf("%s was not built: %v", name, buildErrs[name])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, bin, args...)
	c.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	c.Stdout, c.Stderr = &o, &e
	err := c.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s %q still running after 2 minutes", name, args)
	case errors.As(err, &ee):
		return ee.ExitCode(), o.String(), e.String()
	case err != nil:
		t.Fatal(err)
	}
	return 0, o.String(), e.String()
}

// expect checks a command's exit status and that a failure says what is
// wrong in one line on stderr (naming want, if set).
func expect(code int, stderr string, wantCode int, want string) error {
	if code != wantCode {
		return fmt.Errorf("exit status %d, want %d (stderr: %q)", code, wantCode, stderr)
	}
	if wantCode == 0 {
		return nil
	}
	if err := oneLine(stderr); err != nil {
		return err
	}
	if want != "" && !strings.Contains(stderr, want) {
		return fmt.Errorf("stderr %q does not name %q", stderr, want)
	}
	return nil
}

// fstestsDropIns keep fstests' exit codes and messages for bad options
// (the usage, status 1), being drop-ins for its tools.
var fstestsDropIns = map[string]bool{"replay-log": true}

func TestCommandsHelpAndBadFlag(t *testing.T) {
	if err := buildErrs["*"]; err != nil {
		t.Fatal(err)
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range commands {
			if !yield(n) {
				return
			}
		}
		for n := range buildErrs {
			if !yield(n) {
				return
			}
		}
	})
	if len(names) < 5 {
		t.Fatalf("found only the commands %q in examples/", names)
	}
	for _, name := range names {
		runCase(t, "command/"+name+"/-h", func(t *testing.T, dir string) error {
			code, stdout, stderr := cmd(t, name, nil, "-h")
			if code != 0 {
				return fmt.Errorf("%s -h: exit status %d, want 0", name, code)
			}
			if !strings.Contains(strings.ToLower(stdout+stderr), "usage") {
				return fmt.Errorf("%s -h printed no usage: %q", name, stdout+stderr)
			}
			return nil
		})
		runCase(t, "command/"+name+"/bad-flag", func(t *testing.T, dir string) error {
			code, _, stderr := cmd(t, name, nil, "-no-such-flag")
			if fstestsDropIns[name] {
				if code == 0 || strings.TrimSpace(stderr) == "" {
					return fmt.Errorf("%s -no-such-flag: exit status %d, stderr %q; want a failure saying so", name, code, stderr)
				}
				return nil
			}
			return expect(code, stderr, 2, "no-such-flag")
		})
	}
}

func TestCommandsBadValues(t *testing.T) {
	dir := t.TempDir()
	data := writeFile(t, filepath.Join(dir, "data.img"), 64<<10, true)
	g := guardFiles(t, data)
	for _, c := range []struct {
		name string
		args []string
		code int
		want string // in the one line on stderr
	}{
		{"mirror", []string{"-region", "0"}, 2, "-region"},
		{"mirror", []string{"-region", "3KiB"}, 2, "-region"},
		{"mirror", []string{"-size", "1000"}, 2, "-size"},
		{"mirror", []string{"-size", "lots"}, 2, "-size"},
		{"mirror", []string{"-writers", "-1"}, 2, "-writers"},
		{"mirror", []string{"-run", "-1s"}, 2, "-run"},
		{"mirror", []string{"stray"}, 2, "stray"},
		{"crashtest", []string{"-puts", "-1"}, 2, "-puts"},
		{"crashtest", []string{"-parallel", "-2"}, 2, "-parallel"},
		{"examine-log", nil, 2, "FILE"},
		{"examine-log", []string{"a", "b"}, 2, ""},
		{"examine-log", []string{filepath.Join(dir, "missing")}, 1, filepath.Join(dir, "missing")},
		{"examine-log", []string{data}, 1, data},
		{"logserver", []string{"-listen", "unix:" + filepath.Join(dir, "s"), "-log-dir", filepath.Join(dir, "nodir")}, 2, filepath.Join(dir, "nodir")},
		{"logserver", []string{"-listen", "unix:" + filepath.Join(dir, "s"), "-log-dir", data}, 2, data},
		{"logserver", []string{"-listen", "unix:" + filepath.Join(dir, "s"), "-log-size", "0"}, 2, "-log-size"},
		{"logserver", []string{"-listen", "udp:x"}, 2, "-listen"},
		{"logserver", nil, 2, "-listen"},
		{"logserver", []string{"-listen", "unix:" + data}, 1, data},
		{"cluster", []string{"stray"}, 2, "stray"},
	} {
		runCase(t, "command/"+c.name+"/"+strings.Join(c.args, " "), func(t *testing.T, _ string) error {
			code, _, stderr := cmd(t, c.name, nil, c.args...)
			return errors.Join(expect(code, stderr, c.code, c.want), g.changed())
		})
	}
}

// startCmd starts a command in the background and returns it with a
// scanner of its stdout (stderr goes to errBuf). The test kills it at the
// end if it is still running.
func startCmd(t *testing.T, name string, env []string, errBuf *bytes.Buffer, args ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	bin, ok := commands[name]
	if !ok {
		t.Fatalf("%s was not built: %v", name, buildErrs[name])
	}
	c := exec.Command(bin, args...)
	c.Env = append(os.Environ(), env...)
	c.Stderr = errBuf
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if c.ProcessState == nil {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	})
	return c, bufio.NewScanner(out)
}

// waitLine reads lines until one contains want; it fails after d.
func waitLine(sc *bufio.Scanner, want string, d time.Duration) error {
	found := make(chan error, 1)
	go func() {
		var seen []string
		for sc.Scan() {
			if strings.Contains(sc.Text(), want) {
				found <- nil
				for sc.Scan() { // keep draining: a full pipe would block the command
				}
				return
			}
			seen = append(seen, sc.Text())
		}
		found <- fmt.Errorf("output ended without %q: %q", want, seen)
	}()
	select {
	case err := <-found:
		return err
	case <-time.After(d):
		return fmt.Errorf("no %q within %v", want, d)
	}
}

// wait waits for c to exit, at most d, and returns its exit status.
func wait(c *exec.Cmd, d time.Duration) (int, error) {
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			return -1, err
		}
		return c.ProcessState.ExitCode(), nil
	case <-time.After(d):
		_ = c.Process.Kill()
		<-done
		return -1, fmt.Errorf("still running %v after SIGTERM", d)
	}
}

// leftovers lists what is in dir.
func leftovers(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) > 0 {
		return fmt.Errorf("left behind in TMPDIR: %q", names)
	}
	return nil
}

func TestCommandsSIGTERM(t *testing.T) {
	for name, sig := range map[string]os.Signal{"sigterm/mirror": syscall.SIGTERM, "sigint/mirror": os.Interrupt} {
		runCase(t, name, func(t *testing.T, dir string) error {
			var stderr bytes.Buffer
			c, out := startCmd(t, "mirror", []string{"TMPDIR=" + dir}, &stderr, "-size", "16MiB", "-run", "1m")
			if err := waitLine(out, "now writing only", time.Minute); err != nil { // the child is writing
				return fmt.Errorf("the demo did not start its workload: %v (stderr %q)", err, stderr.String())
			}
			if err := c.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			code, err := wait(c, 30*time.Second)
			if err != nil {
				return err
			}
			var errs []error
			if code == 0 {
				errs = append(errs, errors.New("exit status 0 after the signal; want a failure"))
			}
			return errors.Join(append(errs, oneLine(stderr.String()), leftovers(dir))...)
		})
	}

	runCase(t, "sigterm/logserver", func(t *testing.T, dir string) error {
		sock := filepath.Join(dir, "s")
		var stderr bytes.Buffer
		c, _ := startCmd(t, "logserver", nil, &stderr, "-listen", "unix:"+sock, "-log-dir", dir)
		if err := waitSocket(sock, time.Minute); err != nil {
			return fmt.Errorf("%v (stderr %q)", err, stderr.String())
		}
		if err := c.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		code, err := wait(c, 30*time.Second)
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("exit status %d after SIGTERM; want a clean shutdown (stderr %q)", code, stderr.String())
		}
		if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("the socket is left behind (%v)", err)
		}
		return nil
	})

	runCase(t, "sigterm/cluster", func(t *testing.T, dir string) error {
		var stderr bytes.Buffer
		c, out := startCmd(t, "cluster", []string{"TMPDIR=" + dir}, &stderr)
		if err := waitLine(out, "legs:", time.Minute); err != nil {
			return fmt.Errorf("the demo did not start its nodes: %v (stderr %q)", err, stderr.String())
		}
		if err := c.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		code, err := wait(c, time.Minute)
		if err != nil {
			return err
		}
		var errs []error
		if code == 0 {
			errs = append(errs, errors.New("exit status 0 after SIGTERM; want a failure"))
		}
		return errors.Join(append(errs, oneLine(stderr.String()), leftovers(dir))...)
	})
}

// waitSocket waits until a server answers at path.
func waitSocket(path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no server at %s within %v: %v", path, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCommandsTwoOpeners(t *testing.T) {
	runCase(t, "logserver-live-socket", func(t *testing.T, dir string) error {
		sock := filepath.Join(dir, "s")
		var stderr bytes.Buffer
		a, _ := startCmd(t, "logserver", nil, &stderr, "-listen", "unix:"+sock)
		if err := waitSocket(sock, time.Minute); err != nil {
			return fmt.Errorf("%v (stderr %q)", err, stderr.String())
		}
		code, _, berr := cmd(t, "logserver", nil, "-listen", "unix:"+sock)
		res := expect(code, berr, 1, sock)
		if err := waitSocket(sock, time.Second); err != nil {
			res = errors.Join(res, fmt.Errorf("the first server no longer answers: %w", err))
		}
		_ = a.Process.Signal(syscall.SIGTERM)
		if _, err := wait(a, 30*time.Second); err != nil {
			res = errors.Join(res, err)
		}
		return res
	})

	runCase(t, "two-logservers-same-log-dir", func(t *testing.T, dir string) error {
		logDir := filepath.Join(dir, "logs")
		if err := os.Mkdir(logDir, 0o700); err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		a, _ := startCmd(t, "logserver", nil, &stderr, "-listen", "unix:"+filepath.Join(dir, "a"), "-log-dir", logDir)
		if err := waitSocket(filepath.Join(dir, "a"), time.Minute); err != nil {
			return fmt.Errorf("%v (stderr %q)", err, stderr.String())
		}
		code, _, berr := cmd(t, "logserver", nil, "-listen", "unix:"+filepath.Join(dir, "b"), "-log-dir", logDir)
		res := expect(code, berr, 1, logDir)
		_ = a.Process.Signal(syscall.SIGTERM)
		if _, err := wait(a, 30*time.Second); err != nil {
			res = errors.Join(res, err)
		}
		return res
	})

	runCase(t, "two-mirror-demos-same-dir", func(t *testing.T, dir string) error {
		args := []string{"-dir", dir, "-size", "4MiB", "-region", "256KiB", "-writers", "2", "-run", "100ms"}
		if code, stdout, stderr := cmd(t, "mirror", nil, args...); code != 0 {
			t.Fatalf("first demo: exit status %d\n%s\n%s", code, stdout, stderr)
		}
		g := guardFiles(t, filepath.Join(dir, "leg0.img"), filepath.Join(dir, "leg1.img"), filepath.Join(dir, "log.img"))
		code, _, stderr := cmd(t, "mirror", nil, args...)
		return errors.Join(expect(code, stderr, 1, "already exists"), g.changed())
	})
}

func TestLogserverFilesInLogDir(t *testing.T) {
	for name, size := range map[string]int{"logserver-short-data-file-in-log-dir": 1000, "logserver-data-file-in-log-dir": 64 << 10} {
		runCase(t, name, func(t *testing.T, dir string) error {
			logDir := filepath.Join(dir, "logs")
			if err := os.Mkdir(logDir, 0o700); err != nil {
				t.Fatal(err)
			}
			data := writeFile(t, filepath.Join(logDir, "data.log"), size, true)
			g := guardFiles(t, data)
			sock := filepath.Join(dir, "s")
			var stderr bytes.Buffer
			srv, _ := startCmd(t, "logserver", nil, &stderr, "-listen", "unix:"+sock, "-log-dir", logDir)
			if err := waitSocket(sock, time.Minute); err != nil {
				return fmt.Errorf("%v (stderr %q)", err, stderr.String())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := remote.Dial(ctx, "unix", sock, remote.ClientOptions{UUID: "vol", Node: 1, DeviceSize: 1 << 30,
				Args: []string{"clustered-disk", "data.log", "1024"}})
			if err == nil {
				c.Close()
			}
			res := errors.Join(clearError("a clustered-disk log on a file of data in -log-dir", err), g.changed())
			_ = srv.Process.Signal(syscall.SIGTERM)
			if _, err := wait(srv, 30*time.Second); err != nil {
				res = errors.Join(res, err)
			}
			return res
		})
	}
}
