package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRun runs the demo: a node killed mid-write, its regions resynced by
// the survivor, both legs identical and no acknowledged write lost (run
// fails otherwise).
func TestRun(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	var out bytes.Buffer
	if err := run(context.Background(), &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"legs differ: true", "64/64 regions in sync", "legs identical: true", "lost: 0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	assertEmptyDir(t, os.Getenv("TMPDIR"))
}

// notifyWriter calls hit once the output contains want.
type notifyWriter struct {
	mu   sync.Mutex
	b    bytes.Buffer
	want string
	hit  chan struct{}
	once sync.Once
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if strings.Contains(w.b.String(), w.want) {
		w.once.Do(func() { close(w.hit) })
	}
	return len(p), nil
}

// An interrupted run (the context SIGINT/SIGTERM cancel) stops early,
// says so, and removes its temporary directory.
func TestInterruptRemovesTempDir(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &notifyWriter{want: "legs: 2 files", hit: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- run(ctx, out) }()
	select {
	case <-out.hit:
	case err := <-done:
		t.Fatalf("run ended before the nodes started: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the nodes did not start within a minute")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted") {
			t.Errorf("interrupted run returned %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not stop within a minute of the interrupt")
	}
	assertEmptyDir(t, os.Getenv("TMPDIR"))
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("left behind in the temporary directory: %s", e.Name())
	}
}

func TestParseArgs(t *testing.T) {
	if err := parseArgs(nil, io.Discard); err != nil {
		t.Errorf("no arguments: %v", err)
	}
	var usage bytes.Buffer
	if err := parseArgs([]string{"-h"}, &usage); !errors.Is(err, flag.ErrHelp) || !strings.Contains(usage.String(), "usage: cluster") {
		t.Errorf("-h: %v, %q", err, usage.String())
	}
	for _, args := range [][]string{{"extra"}, {"-nosuch"}, {"-size", "1MiB"}} {
		err := parseArgs(args, io.Discard)
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v; want a one-line error", args, err)
		}
	}
}
