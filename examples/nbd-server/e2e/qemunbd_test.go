package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHarnessOnQemuNBD runs the guest's workload against qemu-nbd instead
// of dmlog's server: a control that tells a harness problem (kernel,
// initramfs, relay, workload) from a dmlog one. It runs with DMLOG_LONG=1
// or DMLOG_E2E_QEMUNBD=1.
func TestHarnessOnQemuNBD(t *testing.T) {
	e := requireE2E(t)
	if !long() && os.Getenv("DMLOG_E2E_QEMUNBD") != "1" {
		t.Skip("control run against qemu-nbd: set DMLOG_LONG=1 or DMLOG_E2E_QEMUNBD=1")
	}
	qnbd, err := hostPath("qemu-nbd")
	if err != nil {
		t.Skip("skipped: qemu-nbd not found (apt-get install qemu-utils)")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(devSize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	sock := filepath.Join(dir, "nbd.sock")
	// --fork returns once the socket is listening.
	pidFile := filepath.Join(dir, "pid")
	if out, err := exec.Command(qnbd, "--fork", "--pid-file", pidFile, "-k", sock, "-f", "raw", "--cache=none", img).CombinedOutput(); err != nil {
		t.Fatalf("qemu-nbd: %v: %s", err, out)
	}
	t.Cleanup(func() {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return // it exited with its client
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
	})
	res := e.run(t, "workload on qemu-nbd", bootOptions{name: "qemu-nbd", sock: sock, late: true, steps: stepsFull, seed: workloadSeed})
	if err := checkDurableListing(res, res); err != nil {
		t.Fatal(err)
	}
	if err := fsckImage(e.bin["e2fsck"], img); err != nil {
		t.Fatal(err)
	}
	t.Logf("qemu-nbd: attached %v, mkfs %v, workload %v, wall %v, %d durable files", res.attached.Round(time.Millisecond), res.steps["mkfs"], res.steps["workload"], res.wall.Round(time.Millisecond), len(res.durable))
}
