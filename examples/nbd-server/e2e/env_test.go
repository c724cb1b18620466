package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// tools are the host programs the tests need, with the Debian package
// that ships each.
var tools = []struct{ name, pkg string }{
	{"qemu-system-x86_64", "qemu-system-x86"},
	{"busybox", "busybox-static"},
	{"nbd-client", "nbd-client"},
	{"mke2fs", "e2fsprogs"},
	{"e2fsck", "e2fsprogs"},
	{"debugfs", "e2fsprogs"},
	{"ldd", "libc-bin"},
	{"go", "the Go toolchain"},
}

// hostPath finds a host program, also in the sbin directories a non-root
// PATH may lack.
func hostPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/go/bin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// env is what every end-to-end test shares: the tools, the kernel and the
// initramfs, built once per test binary.
type env struct {
	bin       map[string]string // tool name -> path
	kernel    *kernel
	initramfs string // path of the cpio archive
	dir       string // scratch directory of the test binary
}

var (
	envOnce sync.Once
	envVal  *env
	envSkip string // reason to skip, if the environment cannot be had
	envErr  error
)

// requireE2E returns the shared environment, or skips the test with the
// reason it cannot run (DMLOG_E2E unset, a tool missing), or fails it if
// building the environment failed.
func requireE2E(t *testing.T) *env {
	t.Helper()
	if os.Getenv("DMLOG_E2E") != "1" {
		t.Skip("end-to-end test with a qemu guest: set DMLOG_E2E=1 to run it (needs qemu-system-x86, busybox-static, nbd-client, e2fsprogs; see README)")
	}
	envOnce.Do(func() { envVal, envSkip, envErr = buildEnv() })
	if envSkip != "" {
		t.Skip(envSkip)
	}
	if envErr != nil {
		t.Fatalf("building the e2e environment: %v", envErr)
	}
	return envVal
}

func buildEnv() (*env, string, error) {
	e := &env{bin: map[string]string{}}
	for _, tl := range tools {
		p, err := hostPath(tl.name)
		if err != nil {
			return nil, "skipped: " + tl.name + " not found (apt-get install " + tl.pkg + ")", nil
		}
		e.bin[tl.name] = p
	}
	dir, err := os.MkdirTemp("", "dmlog-e2e-")
	if err != nil {
		return nil, "", err
	}
	e.dir = dir
	k, skip, err := fetchKernel(cacheDir(), e.bin)
	if skip != "" || err != nil {
		return nil, skip, err
	}
	e.kernel = k
	e.initramfs = filepath.Join(dir, "initramfs.cpio")
	if err := buildInitramfs(e, e.initramfs); err != nil {
		return nil, "", err
	}
	return e, "", nil
}

// cacheDir is where the kernel package is kept between runs.
func cacheDir() string {
	if d := os.Getenv("DMLOG_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "dmlog-e2e")
	}
	return filepath.Join(os.TempDir(), "dmlog-e2e-cache")
}

// long reports whether DMLOG_LONG=1 asks for the long runs.
func long() bool { return os.Getenv("DMLOG_LONG") == "1" }

// envInt reads a positive integer from the environment, or def.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, s)
	}
	return v
}

// envSeed reads a seed from the environment, or def.
func envSeed(t *testing.T, name string, def uint64) uint64 {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		t.Fatalf("%s=%q: want an unsigned integer seed", name, s)
	}
	return v
}
