package e2e

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// kernel is a Debian kernel extracted into the cache: the image and the
// modules the guest loads, in load order (dependencies first).
type kernel struct {
	pkg     string   // e.g. linux-image-6.1.0-57-amd64
	vmlinuz string   // path of the kernel image
	modules []string // paths of the .ko files, in load order
}

// guestModules are the modules the guest needs; their dependencies are
// found in the modules' own .modinfo. crc32c_generic is what ext4 and
// jbd2 ask the crypto API for (not a symbol dependency).
var guestModules = []string{"virtio_pci", "virtio_console", "nbd", "crc32c_generic", "ext4"}

var kernelPkgRE = regexp.MustCompile(`^linux-image-6\.1\.0-([0-9]+)-amd64$`)

// fetchKernel returns the kernel in cache, downloading the package with
// apt-get download the first time. DMLOG_KERNEL_PKG picks the package;
// by default the newest linux-image-6.1.0-N-amd64 already in the cache, or
// else the newest apt knows.
func fetchKernel(cache string, bin map[string]string) (*kernel, string, error) {
	pkg := os.Getenv("DMLOG_KERNEL_PKG")
	if pkg == "" {
		pkg = newestCached(cache)
	}
	if pkg == "" {
		out, err := exec.Command("apt-cache", "search", "--names-only", `^linux-image-6\.1\.0-[0-9]+-amd64$`).Output()
		if err != nil {
			return nil, "skipped: apt-cache search for the guest kernel failed (" + err.Error() + "); set DMLOG_KERNEL_PKG or fill " + cache, nil
		}
		best := -1
		for _, line := range strings.Split(string(out), "\n") {
			name, _, _ := strings.Cut(line, " ")
			if m := kernelPkgRE.FindStringSubmatch(name); m != nil {
				if n, _ := strconv.Atoi(m[1]); n > best {
					best, pkg = n, name
				}
			}
		}
		if pkg == "" {
			return nil, "skipped: apt knows no linux-image-6.1.0-*-amd64 package (Debian 12 bookworm archive needed); set DMLOG_KERNEL_PKG", nil
		}
	}
	dir := filepath.Join(cache, pkg)
	if _, err := os.Stat(filepath.Join(dir, "complete")); err != nil {
		for _, tl := range []struct{ name, pkg string }{{"apt-get", "apt"}, {"dpkg-deb", "dpkg"}} {
			p, err := hostPath(tl.name)
			if err != nil {
				return nil, "skipped: " + tl.name + " (package " + tl.pkg + ") is needed to fetch the guest kernel " + pkg + " into " + cache, nil
			}
			bin[tl.name] = p
		}
		if err := downloadKernel(cache, pkg, bin); err != nil {
			return nil, "", err
		}
	}
	return loadKernel(dir, pkg)
}

// newestCached returns the newest complete kernel in the cache, or "".
func newestCached(cache string) string {
	ents, _ := os.ReadDir(cache)
	best, pkg := -1, ""
	for _, e := range ents {
		m := kernelPkgRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(cache, e.Name(), "complete")); err != nil {
			continue
		}
		if n, _ := strconv.Atoi(m[1]); n > best {
			best, pkg = n, e.Name()
		}
	}
	return pkg
}

// downloadKernel fetches pkg with apt-get download, extracts it, and keeps
// in cache/pkg only the kernel image and the modules the guest loads (with
// their dependencies), published atomically by a rename.
func downloadKernel(cache, pkg string, bin map[string]string) error {
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp(cache, "download-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	cmd := exec.Command(bin["apt-get"], "download", pkg)
	cmd.Dir = work
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get download %s: %v\n%s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(work, pkg+"_*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download %s: found %d .deb files", pkg, len(debs))
	}
	x := filepath.Join(work, "x")
	if out, err := exec.Command(bin["dpkg-deb"], "-x", debs[0], x).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %v\n%s", debs[0], err, out)
	}
	ver := strings.TrimPrefix(pkg, "linux-image-")
	stage := filepath.Join(work, "stage")
	if err := os.MkdirAll(filepath.Join(stage, "modules"), 0o755); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(x, "boot", "vmlinuz-"+ver), filepath.Join(stage, "vmlinuz")); err != nil {
		return err
	}
	order, err := moduleOrder(filepath.Join(x, "lib", "modules", ver), guestModules)
	if err != nil {
		return err
	}
	var names []string
	for _, p := range order {
		name := filepath.Base(p)
		if err := copyFile(p, filepath.Join(stage, "modules", name)); err != nil {
			return err
		}
		names = append(names, name)
	}
	if err := os.WriteFile(filepath.Join(stage, "modules", "order"), []byte(strings.Join(names, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(stage, "complete"), []byte(pkg+"\n"), 0o644); err != nil {
		return err
	}
	dst := filepath.Join(cache, pkg)
	if err := os.Rename(stage, dst); err != nil {
		if _, serr := os.Stat(filepath.Join(dst, "complete")); serr == nil {
			return nil // another run published it first
		}
		return err
	}
	return nil
}

func loadKernel(dir, pkg string) (*kernel, string, error) {
	k := &kernel{pkg: pkg, vmlinuz: filepath.Join(dir, "vmlinuz")}
	b, err := os.ReadFile(filepath.Join(dir, "modules", "order"))
	if err != nil {
		return nil, "", fmt.Errorf("kernel cache %s: %w (delete it to fetch again)", dir, err)
	}
	for _, n := range strings.Fields(string(b)) {
		k.modules = append(k.modules, filepath.Join(dir, "modules", n))
	}
	return k, "", nil
}

// moduleOrder finds the named modules under root and returns their paths
// with every dependency (from each module's .modinfo "depends=") before
// the modules that need it.
func moduleOrder(root string, want []string) ([]string, error) {
	byName := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			byName[normModName(strings.TrimSuffix(d.Name(), ".ko"))] = p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string) error
	visit = func(name string) error {
		name = normModName(name)
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency cycle at %s", name)
		case 2:
			return nil
		}
		p, ok := byName[name]
		if !ok {
			return fmt.Errorf("module %s not found under %s (built in? compressed?)", name, root)
		}
		state[name] = 1
		deps, err := moduleDeps(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, p)
		return nil
	}
	for _, w := range want {
		if err := visit(w); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func normModName(s string) string { return strings.ReplaceAll(s, "-", "_") }

// moduleDeps reads the "depends=" field of a module's .modinfo section.
func moduleDeps(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", path, err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil, fmt.Errorf("module %s has no .modinfo section", path)
	}
	b, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("module %s: .modinfo: %w", path, err)
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d != "" {
					deps = append(deps, d)
				}
			}
			slices.Sort(deps)
			return deps, nil
		}
	}
	return nil, nil
}

// readFileMode returns a file's contents and permission bits (symlinks
// followed).
func readFileMode(src string) ([]byte, fs.FileMode, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return nil, 0, err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return nil, 0, err
	}
	return b, fi.Mode().Perm(), nil
}

func copyFile(src, dst string) error {
	b, perm, err := readFileMode(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, b, perm); err != nil {
		return errors.Join(fmt.Errorf("copying %s", src), err)
	}
	return nil
}
