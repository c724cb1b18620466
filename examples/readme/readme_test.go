package readme

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

const root = "../.."

func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// goBlocks returns the README's ```go code blocks.
func goBlocks(text string) []string {
	var blocks []string
	for _, part := range strings.Split(text, "```go\n")[1:] {
		if end := strings.Index(part, "```"); end >= 0 {
			blocks = append(blocks, part[:end])
		}
	}
	return blocks
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// want maps a phrase of a program's source to a phrase its output must
// hold (a program that prints nothing just has to exit 0).
var want = map[string]string{
	"logwrites.Replay": "at the mark the second block is still zero: true",
}

// TestProgramsBuildAndRun builds each Go program of the README in this
// module (as a user's program importing github.com/dmlog/dmlog would be)
// and runs it in an empty directory.
func TestProgramsBuildAndRun(t *testing.T) {
	blocks := goBlocks(readme(t))
	if len(blocks) < 2 {
		t.Fatalf("README.md has %d Go programs; want the mirror and the recorder ones", len(blocks))
	}
	for i, src := range blocks {
		dir := t.TempDir()
		file := filepath.Join(dir, "main.go")
		if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		build := exec.CommandContext(ctx, goTool(), "build", "-o", filepath.Join(dir, "prog"), file)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			cancel()
			t.Errorf("README Go program %d does not build: %v\n%s\n%s", i+1, err, out, src)
			continue
		}
		run := exec.CommandContext(ctx, filepath.Join(dir, "prog"))
		run.Dir = t.TempDir()
		var out bytes.Buffer
		run.Stdout, run.Stderr = &out, &out
		err := run.Run()
		cancel()
		if err != nil {
			t.Errorf("README Go program %d fails: %v\n%s", i+1, err, out.String())
			continue
		}
		for phrase, w := range want {
			if strings.Contains(src, phrase) && !strings.Contains(out.String(), w) {
				t.Errorf("README Go program %d printed %q; want %q", i+1, out.String(), w)
			}
		}
	}
}

// TestFuzzListIsComplete checks that the README's fuzz commands name every
// func Fuzz of the repository (nested modules included), each with
// -fuzzminimizetime, and no target that does not exist.
func TestFuzzListIsComplete(t *testing.T) {
	text := readme(t)
	decl := regexp.MustCompile(`(?m)^func (Fuzz\w+)\(`)
	have := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			have[m[1]] = p
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(have) == 0 {
		t.Fatal("no fuzz targets found: is the walk rooted at the repository?")
	}
	listed := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		m := regexp.MustCompile(`-fuzz '\^(Fuzz\w+)\$'`).FindStringSubmatch(line)
		if m == nil {
			continue
		}
		listed[m[1]] = true
		if !strings.Contains(line, "-fuzzminimizetime") {
			t.Errorf("README fuzz command for %s lacks -fuzzminimizetime: %s", m[1], line)
		}
		file, ok := have[m[1]]
		if !ok {
			t.Errorf("README lists %s, which no _test.go declares", m[1])
			continue
		}
		if rel, _ := filepath.Rel(root, filepath.Dir(file)); !strings.Contains(line, rel) {
			t.Errorf("README runs %s outside its package %s: %s", m[1], rel, line)
		}
	}
	for name, file := range have {
		if !listed[name] {
			t.Errorf("README's fuzz commands miss %s (%s)", name, file)
		}
	}
}
