package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary act as the demo's workload child, since
// the demo re-executes os.Args[0].
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		main()
		return
	}
	os.Exit(m.Run())
}

// captureStdout runs f with os.Stdout redirected and returns what it
// printed.
func captureStdout(t *testing.T, f func() error) (string, error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stdout
	os.Stdout = w
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		done <- b
	}()
	ferr := f()
	os.Stdout = saved
	w.Close()
	out := <-done
	r.Close()
	return string(out), ferr
}

// TestDemo runs the whole demo (child process, SIGKILL, recovery, verify)
// on a small mirror whose last region is partial, and checks that the log
// narrowed the resync to the hot regions.
func TestDemo(t *testing.T) {
	c := config{dir: t.TempDir(), size: 8<<20 + 128<<10, region: 256 << 10, writers: 4, hot: 3, run: 300 * time.Millisecond}
	out, err := captureStdout(t, func() error { return demo(c, &cleaner{}) })
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	m := regexp.MustCompile(`resynced (\d+) of (\d+) regions \((\d+\.\d) MiB instead of 8\.1 MiB\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no resync summary in:\n%s", out)
	}
	k, _ := strconv.Atoi(m[1])
	n, _ := strconv.Atoi(m[2])
	if n != 33 || k > c.hot {
		t.Errorf("resynced %d of %d regions; want at most the %d hot ones of 33:\n%s", k, n, c.hot, out)
	}
	if !strings.Contains(out, "OK: crash recovered, legs identical.") {
		t.Errorf("no OK line:\n%s", out)
	}
	// A second run on the same directory refuses to overwrite the files.
	_, err = captureStdout(t, func() error { return demo(c, &cleaner{}) })
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second demo in the same -dir: %v, want an \"already exists\" error", err)
	}
}

func TestParseArgs(t *testing.T) {
	c, err := parseArgs([]string{"-size", "128MiB", "-region", "64KiB", "-rate", "8MiB", "-writers", "2", "-run", "1s"}, io.Discard)
	if err != nil || c.size != 128<<20 || c.region != 64<<10 || c.rate != 8<<20 || c.writers != 2 || c.run != time.Second {
		t.Errorf("parseArgs = %+v, %v", c, err)
	}
	if c, err := parseArgs([]string{"-size", "1048576", "-region", "4096"}, io.Discard); err != nil || c.size != 1<<20 || c.region != 4096 {
		t.Errorf("bare numbers are bytes: %+v, %v", c, err)
	}
	var usage bytes.Buffer
	if _, err := parseArgs([]string{"-h"}, &usage); !errors.Is(err, flag.ErrHelp) || !strings.Contains(usage.String(), "-region") {
		t.Errorf("-h: %v, usage %q", err, usage.String())
	}
	for args, want := range map[string]string{
		"-region 0":        "-region 0B: want a power of two",
		"-region 3KiB":     "-region 3KiB: want a power of two",
		"-region 128MiB":   "larger than -size",
		"-size 1000":       "-size 1000B: want a positive multiple of 512",
		"-size lots":       `invalid value "lots" for flag -size`,
		"-writers -1":      "-writers -1: want at least 1",
		"-writers 0":       "-writers 0: want at least 1",
		"-hot 0":           "-hot 0: want at least 1",
		"-run -1s":         "-run -1s: want a positive duration",
		"-rate -5":         `invalid value "-5" for flag -rate`,
		"-nosuch":          "flag provided but not defined: -nosuch",
		"extra":            `unexpected argument "extra"`,
		"-region 1.5KiB":   "-region 1536B: want a power of two",
		"-size 64MiB -x 1": "not defined: -x",
	} {
		_, err := parseArgs(strings.Fields(args), io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("parseArgs(%s) = %v; want one line containing %q", args, err, want)
		}
	}
}
