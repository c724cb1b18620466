package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// errFsck is wrapped by the host-side checks of an ext4 image.
var errFsck = errors.New("e2e: file system check failed")

// writeImage copies size bytes of r into a new sparse file at path: runs
// of zeros become holes, so a mostly empty file system costs little.
func writeImage(path string, r io.ReaderAt, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	for off := int64(0); off < size; off += chunk {
		b := buf[:min(chunk, size-off)]
		if n, err := r.ReadAt(b, off); n != len(b) {
			f.Close()
			return fmt.Errorf("reading the image at %d: %d bytes, %v", off, n, err)
		}
		if len(bytes.TrimLeft(b, "\x00")) == 0 {
			continue // a hole: left as one in the sparse copy
		}
		if _, err := f.WriteAt(b, off); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// fsckImage checks the ext4 image at path as fstests does after a crash:
// first the journal is replayed (e2fsck -E journal_only, which changes the
// image), then e2fsck -fn must exit 0. (e2fsck -fn alone, on an image whose
// journal was not replayed, can exit 0 while it reports problems.)
func fsckImage(e2fsck, path string) error {
	out, err := exec.Command(e2fsck, "-p", "-E", "journal_only", path).CombinedOutput()
	if code := exitCode(err); code > 1 {
		return fmt.Errorf("%w: e2fsck -p -E journal_only exit %d: %s", errFsck, code, lastLines(out, 8))
	}
	out, err = exec.Command(e2fsck, "-fn", path).CombinedOutput()
	if code := exitCode(err); code != 0 {
		return fmt.Errorf("%w: e2fsck -fn exit %d: %s", errFsck, code, lastLines(out, 12))
	}
	return nil
}

// exitCode returns a command's exit status (0 for success, -1 if it did
// not run).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// checkDurable reads the files of want out of the ext4 image at img with
// debugfs (no mount, no guest) and compares size and sha256. root is the
// workload's directory in the file system ("/w"); dir is scratch space.
func checkDurable(debugfs, img, root, dir string, want []string, info map[string]fileInfo) error {
	if len(want) == 0 {
		return nil
	}
	var cmds bytes.Buffer
	for i, p := range want {
		fmt.Fprintf(&cmds, "dump %s %s\n", filepath.Join(root, p), filepath.Join(dir, fmt.Sprint(i)))
	}
	cf := filepath.Join(dir, "cmds")
	if err := os.WriteFile(cf, cmds.Bytes(), 0o644); err != nil {
		return err
	}
	out, err := exec.Command(debugfs, "-f", cf, img).CombinedOutput()
	if err != nil {
		return fmt.Errorf("debugfs: %v: %s", err, lastLines(out, 5))
	}
	for i, p := range want {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprint(i)))
		if err != nil {
			return fmt.Errorf("%w: durable file %s is lost (debugfs: %s)", errFsck, p, debugfsError(out, p))
		}
		sum := sha256.Sum256(b)
		if w := info[p]; int64(len(b)) != w.size || hex.EncodeToString(sum[:]) != w.sum {
			return fmt.Errorf("%w: durable file %s reads %d bytes sha256 %x, want %d bytes %s",
				errFsck, p, len(b), sum[:8], w.size, w.sum[:16])
		}
	}
	return nil
}

// debugfsError picks the debugfs output line about path p.
func debugfsError(out []byte, p string) string {
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, p) && !strings.HasPrefix(l, "debugfs:") {
			return strings.TrimSpace(l)
		}
	}
	return "no message"
}
