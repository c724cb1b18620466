package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// bootOptions describe one guest boot.
type bootOptions struct {
	name string // names the console log file
	sock string // the NBD server's unix socket (qemu connects to it)
	// late, if set, makes qemu listen on its own socket instead, and the
	// harness connects it to sock only once the guest's relay is ready:
	// for servers with a short handshake timeout (qemu-nbd's is 10 s,
	// less than a slow boot takes).
	late  bool
	steps []string // the /init steps: mkfs, mount, workload, list, umount, fsck
	seed  uint64   // the workload's seed
	bytes string   // the workload's volume (e.g. "24MiB"); "" is the default
	// onLine, if set, receives every DMLOG line (without the prefix) as
	// soon as it is read, from the console reader goroutine. It must be
	// quick and safe for concurrent use with the test goroutine.
	onLine func(line string)
	// timeout bounds the whole boot (default 6 minutes).
	timeout time.Duration
}

// fileInfo is a file of a guest listing or a durable report.
type fileInfo struct {
	size int64
	sum  string
}

// bootResult is what the guest reported.
type bootResult struct {
	console  string              // path of the console log
	durable  []string            // durable paths, in report order
	durables map[string]fileInfo // durable path -> what it must read back as
	files    map[string]fileInfo // the listing: path -> size, sha256
	dirs     []string            // the listing's directories
	errors   []string            // "DMLOG error" lines
	fail     string              // "DMLOG fail" reason, if any
	steps    map[string]time.Duration
	attached time.Duration // wall time from start to the NBD device attached
	wall     time.Duration // wall time of the boot
	ended    bool          // /init reached its end
	listed   bool          // the listing completed
	workload string        // the "workload done" line
}

// guest is a running qemu.
type guest struct {
	cmd     *exec.Cmd
	o       bootOptions
	start   time.Time
	readers sync.WaitGroup
	logf    *os.File
	qsock   string // qemu's chardev socket (late)
	proxy   sync.Once
	conns   []net.Conn // the late connection's two ends

	mu  sync.Mutex
	res bootResult
}

// boot starts qemu with the kernel, the initramfs and a virtio-serial port
// "nbd" connected to o.sock. The guest has no network and no disk but the
// NBD device.
func (e *env) boot(t *testing.T, o bootOptions) *guest {
	t.Helper()
	if o.timeout == 0 {
		o.timeout = 6 * time.Minute
	}
	if o.bytes == "" {
		o.bytes = "24MiB"
	}
	cmdline := []string{"console=ttyS0", "quiet", "panic=-1", "rdinit=/init",
		"dmlog.steps=" + strings.Join(o.steps, ","), "dmlog.seed=" + strconv.FormatUint(o.seed, 10), "dmlog.bytes=" + o.bytes}
	chardev := "socket,id=c0,path=" + o.sock
	qsock := filepath.Join(e.dir, fmt.Sprintf("qemu-%d.sock", time.Now().UnixNano()))
	if o.late {
		chardev = "socket,id=c0,server=on,wait=off,path=" + qsock
	}
	args := []string{"-accel", "tcg", "-nodefaults", "-nic", "none", "-display", "none", "-no-reboot",
		"-m", "512M", "-smp", "1",
		"-kernel", e.kernel.vmlinuz, "-initrd", e.initramfs, "-append", strings.Join(cmdline, " "),
		"-serial", "stdio",
		"-device", "virtio-serial-pci,id=vs",
		"-chardev", chardev,
		"-device", "virtserialport,bus=vs.0,chardev=c0,name=nbd",
	}
	g := &guest{cmd: exec.Command(e.bin["qemu-system-x86_64"], args...), o: o, start: time.Now(), qsock: qsock}
	g.res.durables = map[string]fileInfo{}
	g.res.files = map[string]fileInfo{}
	g.res.steps = map[string]time.Duration{}
	g.res.console = filepath.Join(e.dir, fmt.Sprintf("%s-%d.console", o.name, time.Now().UnixNano()))
	f, err := os.Create(g.res.console)
	if err != nil {
		t.Fatal(err)
	}
	g.logf = f
	out, err := g.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	g.cmd.Stderr = f
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("starting qemu: %v", err)
	}
	g.readers.Add(1)
	go g.read(out)
	t.Cleanup(func() { g.kill() })
	return g
}

// read copies the console to the log file and parses the DMLOG lines.
func (g *guest) read(r io.Reader) {
	defer g.readers.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		fmt.Fprintln(g.logf, line)
		i := strings.Index(line, "DMLOG ")
		if i < 0 {
			continue
		}
		msg := line[i+len("DMLOG "):]
		if g.o.late && strings.HasPrefix(msg, "relay ready") {
			g.proxy.Do(g.connectLate)
		}
		g.parse(msg)
		if g.o.onLine != nil {
			g.o.onLine(msg)
		}
	}
}

// connectLate connects qemu's chardev socket to the server's socket and
// copies between them (on failure the guest's nbd-client fails, which
// the test reports).
func (g *guest) connectLate() {
	q, err := net.Dial("unix", g.qsock)
	if err != nil {
		fmt.Fprintf(g.logf, "harness: connecting to qemu's socket: %v\n", err)
		return
	}
	s, err := net.Dial("unix", g.o.sock)
	if err != nil {
		q.Close()
		fmt.Fprintf(g.logf, "harness: connecting to the server: %v\n", err)
		return
	}
	g.mu.Lock()
	g.conns = []net.Conn{q, s}
	g.mu.Unlock()
	g.readers.Add(2)
	for _, p := range [][2]net.Conn{{q, s}, {s, q}} {
		go func() {
			defer g.readers.Done()
			_, _ = io.Copy(p[0], p[1])
			p[0].Close()
			p[1].Close()
		}()
	}
}

func (g *guest) parse(msg string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := strings.Fields(msg)
	if len(f) == 0 {
		return
	}
	r := &g.res
	switch f[0] {
	case "durable", "file":
		if len(f) != 4 {
			r.errors = append(r.errors, "malformed line: "+msg)
			return
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || size < 0 || !isSHA256(f[3]) {
			r.errors = append(r.errors, "malformed line: "+msg)
			return
		}
		fi := fileInfo{size: size, sum: f[3]}
		if f[0] == "durable" {
			r.durable = append(r.durable, f[1])
			r.durables[f[1]] = fi
		} else {
			r.files[f[1]] = fi
		}
	case "dir":
		if len(f) == 2 {
			r.dirs = append(r.dirs, f[1])
		}
	case "error":
		r.errors = append(r.errors, msg)
	case "fail":
		r.fail = msg
	case "step":
		if len(f) >= 3 && f[2] == "ok" {
			var start, end float64
			for _, kv := range f[3:] {
				k, v, _ := strings.Cut(kv, "=")
				x, _ := strconv.ParseFloat(v, 64)
				switch k {
				case "start":
					start = x
				case "end":
					end = x
				}
			}
			r.steps[f[1]] = time.Duration((end - start) * float64(time.Second))
		}
	case "attached":
		r.attached = time.Since(g.start)
	case "end":
		r.ended = true
	case "list":
		r.listed = true
	case "workload":
		r.workload = msg
	}
}

// isSHA256 reports whether s is 64 lower-case hex digits.
func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// wait waits for qemu to exit (the guest powers off at the end of /init)
// and returns what it reported; it fails if the guest did not end its
// steps or the boot timed out (qemu is then killed).
func (g *guest) wait(ctx context.Context) (*bootResult, error) {
	ctx, cancel := context.WithTimeout(ctx, g.o.timeout-time.Since(g.start))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = g.cmd.Process.Kill()
		<-done
		err = fmt.Errorf("guest %s: %w after %v", g.o.name, ctx.Err(), time.Since(g.start).Round(time.Second))
	}
	g.closeConns()
	g.readers.Wait()
	_ = g.logf.Close()
	g.mu.Lock()
	res := g.res
	g.mu.Unlock()
	res.wall = time.Since(g.start)
	if err != nil {
		return &res, fmt.Errorf("qemu: %w (console: %s)", err, res.console)
	}
	if res.fail != "" {
		return &res, fmt.Errorf("guest %s: %s (console: %s)", g.o.name, res.fail, res.console)
	}
	if !res.ended {
		return &res, fmt.Errorf("guest %s powered off before the end of its steps (console: %s)", g.o.name, res.console)
	}
	return &res, nil
}

// kill cuts the guest's power: SIGKILL, no shutdown of any kind.
func (g *guest) kill() {
	if g.cmd.Process == nil || g.cmd.ProcessState != nil {
		return
	}
	_ = g.cmd.Process.Kill()
}

func (g *guest) closeConns() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.conns {
		c.Close()
	}
}

// tailFile returns the last n lines of a file, for failure messages.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
