package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// cpioWriter writes a cpio archive in the "newc" format the kernel
// unpacks as an initramfs: a 110-byte ASCII header per entry (magic
// 070701, thirteen 8-digit hex fields), the name with its NUL, padding to
// four bytes, the data, padding to four bytes, and a TRAILER!!! entry.
type cpioWriter struct {
	buf  bytes.Buffer
	ino  uint32
	seen map[string]bool
}

func (w *cpioWriter) entry(name string, mode uint32, data []byte, rmaj, rmin uint32) {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	if w.seen == nil {
		w.seen = map[string]bool{}
	}
	if name != "TRAILER!!!" {
		if w.seen[name] {
			return
		}
		w.seen[name] = true
	}
	w.ino++
	nlink := uint32(1)
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	fmt.Fprintf(&w.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		w.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmaj, rmin, len(name)+1, 0)
	w.buf.WriteString(name)
	w.buf.WriteByte(0)
	w.pad()
	w.buf.Write(data)
	w.pad()
}

func (w *cpioWriter) pad() {
	for w.buf.Len()%4 != 0 {
		w.buf.WriteByte(0)
	}
}

// dirs adds every parent directory of name not added yet.
func (w *cpioWriter) dirs(name string) {
	d := path.Dir(path.Clean("/" + name))
	if d == "/" {
		return
	}
	w.dirs(d)
	w.entry(d, 0o040755, nil, 0, 0)
}

func (w *cpioWriter) dir(name string) {
	w.dirs(name)
	w.entry(name, 0o040755, nil, 0, 0)
}

func (w *cpioWriter) file(name string, data []byte, perm uint32) {
	w.dirs(name)
	w.entry(name, 0o100000|perm, data, 0, 0)
}

func (w *cpioWriter) chardev(name string, maj, min uint32) {
	w.dirs(name)
	w.entry(name, 0o020600, nil, maj, min)
}

// hostFile adds a host file (symlinks followed) at the same path.
func (w *cpioWriter) hostFile(src, dst string) error {
	b, perm, err := readFileMode(src)
	if err != nil {
		return err
	}
	w.file(dst, b, uint32(perm))
	return nil
}

func (w *cpioWriter) bytes() []byte {
	w.entry("TRAILER!!!", 0, nil, 0, 0)
	return w.buf.Bytes()
}

// sharedLibs lists the shared libraries (and the loader) a dynamic
// executable needs, as ldd resolves them on the host.
func sharedLibs(ldd, exe string) ([]string, error) {
	out, err := exec.Command(ldd, exe).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", exe, err)
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0]) // the loader
		}
	}
	return libs, nil
}

// buildGuestProgram builds one of the guest commands, static.
func buildGuestProgram(goBin, pkgDir, out string) error {
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", out, ".")
	cmd.Dir = pkgDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkgDir, err, b)
	}
	return nil
}

// buildInitramfs writes the guest's initramfs: busybox, the real
// mke2fs/e2fsck/nbd-client with their libraries, the guest programs, the
// kernel modules and /init.
func buildInitramfs(e *env, out string) error {
	var w cpioWriter
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "run", "tmp", "mnt", "lib/modules"} {
		w.dir(d)
	}
	w.chardev("dev/console", 5, 1)
	w.chardev("dev/null", 1, 3)
	bb, err := os.ReadFile(e.bin["busybox"])
	if err != nil {
		return err
	}
	w.file("bin/busybox", bb, 0o755)
	w.file("bin/sh", bb, 0o755) // a copy: the archive holds no symlinks

	libs := map[string]bool{}
	for _, name := range []string{"mke2fs", "e2fsck", "nbd-client"} {
		src := e.bin[name]
		if err := w.hostFile(src, "usr/sbin/"+name); err != nil {
			return err
		}
		l, err := sharedLibs(e.bin["ldd"], src)
		if err != nil {
			return err
		}
		for _, p := range l {
			libs[p] = true
		}
	}
	for _, p := range slices.Sorted(maps.Keys(libs)) {
		if err := w.hostFile(p, p); err != nil {
			return err
		}
	}
	if _, err := os.Stat("/etc/mke2fs.conf"); err == nil {
		if err := w.hostFile("/etc/mke2fs.conf", "etc/mke2fs.conf"); err != nil {
			return err
		}
	}

	for _, prog := range []string{"workload", "relay"} {
		exe := filepath.Join(e.dir, prog)
		if err := buildGuestProgram(e.bin["go"], filepath.Join("guest", prog), exe); err != nil {
			return err
		}
		if err := w.hostFile(exe, "bin/"+prog); err != nil {
			return err
		}
	}

	var order []string
	for _, m := range e.kernel.modules {
		name := filepath.Base(m)
		if err := w.hostFile(m, "lib/modules/"+name); err != nil {
			return err
		}
		order = append(order, name)
	}
	w.file("modules", []byte(strings.Join(order, "\n")+"\n"), 0o644)

	initScript, err := os.ReadFile(filepath.Join("testdata", "scripts", "init"))
	if err != nil {
		return err
	}
	w.file("init", initScript, 0o755)
	return os.WriteFile(out, w.bytes(), 0o644)
}
