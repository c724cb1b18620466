package cli

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

func newSet() *flag.FlagSet {
	fs := flag.NewFlagSet("cmd", flag.ContinueOnError)
	fs.Int("n", 1, "how many")
	return fs
}

func TestHelpPrintsUsageToStdout(t *testing.T) {
	var out bytes.Buffer
	err := Parse(newSet(), []string{"-h"}, &out, "usage: cmd\n", "footer\n")
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err %v, want flag.ErrHelp", err)
	}
	got := out.String()
	if !strings.HasPrefix(got, "usage: cmd\n") || !strings.Contains(got, "how many") || !strings.HasSuffix(got, "footer\n") {
		t.Fatalf("usage %q: want the header, the flags and the footer", got)
	}
}

func TestBadFlagPrintsNothing(t *testing.T) {
	var out bytes.Buffer
	err := Parse(newSet(), []string{"-n", "x"}, &out, "usage: cmd\n", "")
	if err == nil || errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err %v, want the bad value's error", err)
	}
	if !strings.Contains(err.Error(), "-n") || out.Len() != 0 {
		t.Fatalf("err %q, output %q: want one error naming -n and no output", err, out.String())
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
		line string
	}{
		{nil, 0, ""},
		{flag.ErrHelp, 0, ""},
		{Usagef("-size %d: want more", 3), 2, "cmd: -size 3: want more (-h for help)\n"},
		{errors.New("disk full"), 1, "cmd: disk full\n"},
	} {
		var out bytes.Buffer
		if code := ExitCode(&out, "cmd", tc.err); code != tc.code || out.String() != tc.line {
			t.Errorf("ExitCode(%v) = %d, %q; want %d, %q", tc.err, code, out.String(), tc.code, tc.line)
		}
	}
}

func TestSignalContextStopsOnCancel(t *testing.T) {
	ctx, stop := SignalContext()
	if ctx.Err() != nil {
		t.Fatal("cancelled before any signal")
	}
	stop()
	<-ctx.Done() // stop cancels it: the watcher goroutine ends too
}
