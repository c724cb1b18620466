package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	fx "github.com/dmlog/dmlog/internal/fixture"
)

const kernelDir = "../../testdata/log-writes/sector512"

// kernelData is the sha256 of the kernel fixture's data device after removal.
const kernelData = "f7d43d6e7e4c661cb951d162dce23f97dbfdd33a5cf0867895a883718a2aa546"

func gunzipTo(t *testing.T, src, dst string) { fx.GunzipTo(t, src, dst) }

type fixture struct {
	dir, log, dev string
}

func newFixture(t *testing.T) fixture {
	dir := t.TempDir()
	fx := fixture{dir: dir, log: filepath.Join(dir, "log.img"), dev: filepath.Join(dir, "dev.img")}
	gunzipTo(t, filepath.Join(kernelDir, "log.img.gz"), fx.log)
	require.NoError(t, os.WriteFile(fx.dev, make([]byte, 8<<20), 0o644))
	return fx
}

func (fx fixture) run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func fileSHA(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func TestInfoFindNumEntries(t *testing.T) {
	fx := newFixture(t)
	code, out, _ := fx.run("--log", fx.log)
	require.Equal(t, 0, code)
	require.Equal(t, "Log version=1, sectorsize=512, entries=17\n", out)
	code, out, _ = fx.run("--log", fx.log, "--num-entries")
	require.Equal(t, 0, code)
	require.Equal(t, "17\n", out)
	// mark2 is entry 8; its header is at block 172 (1+1+(1+8)+(1+8)+(1+128)+(1+3)+1+(1+16)+1).
	code, out, _ = fx.run("--log", fx.log, "--find", "--end-mark", "mark2")
	require.Equal(t, 0, code)
	require.Equal(t, "8@173\n", out)
	code, out, _ = fx.run("--log", fx.log, "--find", "--next-fua")
	require.Equal(t, 0, code)
	require.Equal(t, "1@11\n", out)
	code, _, errs := fx.run("--log", fx.log, "--find", "--end-mark", "nope")
	require.Equal(t, 1, code)
	require.Equal(t, "Couldn't find entry\n", errs)
	code, out, _ = fx.run("--log", fx.log, "--find", "--limit", "3", "--start-mark", "mark2")
	require.Equal(t, 0, code)
	require.True(t, strings.HasPrefix(out, "11@"), out)
}

func TestReplay(t *testing.T) {
	fx := newFixture(t)
	code, _, errs := fx.run("--log", fx.log, "--replay", fx.dev)
	require.Equal(t, 0, code, errs)
	require.Equal(t, kernelData, fileSHA(t, fx.dev))

	// Halves through a mark equal the whole.
	require.NoError(t, os.WriteFile(fx.dev, make([]byte, 8<<20), 0o644))
	code, _, _ = fx.run("--log", fx.log, "--replay", fx.dev, "--end-mark", "mark2")
	require.Equal(t, 0, code)
	require.NotEqual(t, kernelData, fileSHA(t, fx.dev))
	code, out, _ := fx.run("--log", fx.log, "--replay", fx.dev, "--start-mark", "mark2", "-v")
	require.Equal(t, 0, code)
	require.Equal(t, kernelData, fileSHA(t, fx.dev))
	require.Contains(t, out, "replaying 9@")
	require.Contains(t, out, "flags 0x4(DISCARD)")
	require.NotContains(t, out, "seek entry")
}

func TestMissingEndMark(t *testing.T) {
	fx := newFixture(t)
	code, _, errs := fx.run("--log", fx.log, "--replay", fx.dev, "--end-mark", "mark9")
	require.Equal(t, 1, code)
	require.Contains(t, errs, "mark9")
	require.Equal(t, make([]byte, 8<<20), must(os.ReadFile(fx.dev)))
	code, _, errs = fx.run("--log", fx.log, "--replay", fx.dev, "--start-mark", "mark9")
	require.Equal(t, 1, code)
	require.Equal(t, "Couldn't find starting mark\n", errs)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestFsck(t *testing.T) {
	fx := newFixture(t)
	// Exit status 3 at the second FUA... the checker fails on the first check
	// after entry 5: it counts its runs in a file.
	counter := filepath.Join(fx.dir, "n")
	script := `n=$(cat ` + counter + ` 2>/dev/null || echo 0); n=$((n+1)); echo $n > ` + counter + `; [ $n -lt 2 ] || exit 3`
	code, _, errs := fx.run("--log", fx.log, "--replay", fx.dev, "--fsck", script, "--check", "flush")
	require.Equal(t, 1, code)
	require.Equal(t, "Fsck errored out on entry 7\n", errs) // flushes are entries 5, 7, 14

	// Killed by a signal: a failure (replay-log counts it as success).
	code, _, errs = fx.run("--log", fx.log, "--replay", fx.dev, "--fsck", "kill -9 $$", "--check", "fua")
	require.Equal(t, 1, code)
	require.Equal(t, "Fsck errored out on entry 1\n", errs)

	// Every 4 entries, all passing; the checker sees the synced target.
	code, out, _ := fx.run("--log", fx.log, "--replay", fx.dev, "--fsck", "echo checked", "--check", "4")
	require.Equal(t, 0, code)
	require.Equal(t, 4, strings.Count(out, "checked")) // entries 3, 7, 11, 15
	code, out, _ = fx.run("--log", fx.log, "--replay", fx.dev, "--fsck", "echo checked", "--check", "discard")
	require.Equal(t, 0, code)
	require.Equal(t, 1, strings.Count(out, "checked"))

	code, _, errs = fx.run("--log", fx.log, "--replay", fx.dev, "--fsck", "true")
	require.Equal(t, 1, code)
	require.Contains(t, errs, "Usage:")
	code, _, errs = fx.run("--log", fx.log, "--check", "0")
	require.Equal(t, 1, code)
	require.Equal(t, "Invalid entry number\n", errs)
}

func TestErrors(t *testing.T) {
	fx := newFixture(t)
	code, _, errs := fx.run()
	require.Equal(t, 1, code)
	require.Contains(t, errs, "Usage:")
	code, _, errs = fx.run("--log", fx.log, "--bogus")
	require.Equal(t, 1, code)
	require.Contains(t, errs, "unrecognized option '--bogus'")
	code, _, errs = fx.run("--log", fx.log, "--start-entry", "17")
	require.Equal(t, 1, code)
	require.Equal(t, "Invalid entry number\n", errs)
	code, _, errs = fx.run("--log", fx.log, "--limit", "x")
	require.Equal(t, 1, code)
	require.Equal(t, "Invalid entry number\n", errs)
	code, _, _ = fx.run("--log", fx.log, "--replay", filepath.Join(fx.dir, "missing"))
	require.Equal(t, 1, code)
	_, err := os.Stat(filepath.Join(fx.dir, "missing"))
	require.True(t, os.IsNotExist(err), "the target is never created")

	bad := filepath.Join(fx.dir, "bad.img")
	b := must(os.ReadFile(fx.log))
	b[0] ^= 1
	require.NoError(t, os.WriteFile(bad, b, 0o644))
	code, _, errs = fx.run("--log", bad)
	require.Equal(t, 1, code)
	require.Equal(t, "Magic doesn't match\n", errs)

	// Junk in entry 2's header block (log block 11): malformed, named by block.
	b = must(os.ReadFile(fx.log))
	b[11*512+100] = 1
	require.NoError(t, os.WriteFile(bad, b, 0o644))
	code, _, errs = fx.run("--log", bad, "--replay", fx.dev)
	require.Equal(t, 1, code)
	require.Contains(t, errs, "Malformed entry @11")
	code, _, _ = fx.run("--log", bad, "--find", "--end-mark", "mark2")
	require.Equal(t, 255, code)

	// An overstated count: everything is applied, then an error.
	b = must(os.ReadFile(fx.log))
	b[16] = 200
	require.NoError(t, os.WriteFile(bad, b, 0o644))
	code, _, errs = fx.run("--log", bad, "--replay", fx.dev)
	require.Equal(t, 1, code)
	require.Contains(t, errs, "after applying 17 entries")
}

func TestGetoptPrefixes(t *testing.T) {
	parseOne := func(args ...string) []parsedOpt {
		opts, _, err := getoptLong(args, "v", table)
		require.NoError(t, err)
		return opts
	}
	require.Equal(t, []parsedOpt{{"start-entry", "3"}}, parseOne("--start", "3"))
	require.Equal(t, []parsedOpt{{"end-mark", "x"}}, parseOne("--end=x"))
	require.Equal(t, []parsedOpt{{"num-entries", ""}}, parseOne("--num"))
	require.Equal(t, []parsedOpt{{"next-flush", ""}}, parseOne("--next"))
	require.Equal(t, []parsedOpt{{"log", "f"}}, parseOne("--l", "f"))
	require.Equal(t, []parsedOpt{{"verbose", ""}, {"v", ""}, {"v", ""}}, parseOne("--verb", "-vv"))
	require.Equal(t, []parsedOpt{{"limit", "2"}}, parseOne("--limit", "2", "--", "--find"))
	_, _, err := getoptLong([]string{"--f"}, "v", table) // find (no argument) vs fsck (argument)
	require.ErrorContains(t, err, "option '--f' is ambiguous; possibilities: '--find' '--fsck'")
	_, _, err = getoptLong([]string{"--log"}, "v", table)
	require.ErrorContains(t, err, "requires an argument")
	_, _, err = getoptLong([]string{"--find=1"}, "v", table)
	require.ErrorContains(t, err, "doesn't allow an argument")
	_, _, err = getoptLong([]string{"-x"}, "v", table)
	require.ErrorContains(t, err, "invalid option -- 'x'")
}

// replay-log's -vv output, recorded from the C tool (xfstests 63a29724) on
// the kernel log: seeks to a start entry, replayed and skipped entries.
const goldenVV = `seek entry 0@1: 0, size 0, flags 0x8
seek entry 1@2: 4096, size 8, flags 0x2
seek entry 2@11: 0, size 8, flags 0x0
replaying 3@21: sector 2048, size 65536, flags 0x0(NONE)
skipping 4@150: sector 8193, size 1536, flags 0x0(NONE)
replaying 5@154: sector 0, size 0, flags 0x1(FLUSH)
replaying 6@155: sector 0, size 8192, flags 0x0(NONE)
replaying 7@172: sector 0, size 0, flags 0x1(FLUSH)
replaying 8@173: sector 0, size 0, flags 0x8(MARK)
`

// Likewise for a walk to a start mark and --find.
const goldenFindVV = `seek entry 0@2: 0, size 0, flags 0x8(MARK)
seek entry 1@3: 4096, size 8, flags 0x2(FUA)
seek entry 2@12: 0, size 8, flags 0x0(NONE)
seek entry 3@21: 2048, size 128, flags 0x0(NONE)
seek entry 4@150: 8193, size 3, flags 0x0(NONE)
seek entry 5@154: 0, size 0, flags 0x1(FLUSH)
seek entry 6@155: 0, size 16, flags 0x0(NONE)
seek entry 7@172: 0, size 0, flags 0x1(FLUSH)
seek entry 8@173: 0, size 0, flags 0x8(MARK)
seek entry 9@174: 2048, size 128, flags 0x4(DISCARD)
seek entry 10@175: 14336, size 256, flags 0x0(NONE)
seek entry 11@432: 16383, size 1, flags 0x0(NONE)
seek entry 12@434: 6144, size 8, flags 0x0(NONE)
seek entry 13@443: 6152, size 8, flags 0x0(NONE)
seek entry 14@452: 0, size 0, flags 0x1(FLUSH)
14@452
`

func TestVerboseOutput(t *testing.T) {
	fx := newFixture(t)
	code, out, _ := fx.run("--log", fx.log, "--replay", fx.dev, "-vv", "--start-entry", "3", "--end-mark", "mark2", "--end-sector", "8000")
	require.Equal(t, 0, code)
	require.Equal(t, goldenVV, out)
	code, out, _ = fx.run("--log", fx.log, "-vv", "--start-mark", "mark2", "--find", "--next-flush")
	require.Equal(t, 0, code)
	require.Equal(t, goldenFindVV, out)
	// On a regular file replay-log announces its fall-back to zeroing once.
	code, out, _ = fx.run("--log", fx.log, "--replay", fx.dev, "-v", "--start-mark", "mark2")
	require.Equal(t, 0, code)
	require.Contains(t, out, "replaying 9@174: sector 2048, size 65536, flags 0x4(DISCARD)\nreplay device doesn't support discard, switching to writing zeros\nreplaying 10@175")
}

// --num-entries prints the super block's count, whatever the start point,
// and replays nothing even with --replay (replay-log prints it and exits
// before its replay loop); a start entry beyond the log still fails first.
func TestNumEntries(t *testing.T) {
	fx := newFixture(t)
	for _, args := range [][]string{
		{"--num-entries"},
		{"--num-entries", "--start-entry", "5"},
		{"--num-entries", "--start-mark", "mark2"},
		{"--num-entries", "--replay", fx.dev},
	} {
		code, out, errs := fx.run(append([]string{"--log", fx.log}, args...)...)
		require.Equal(t, 0, code, "%v: %s", args, errs)
		require.Equal(t, "17\n", out, "%v", args)
	}
	require.Equal(t, make([]byte, 8<<20), must(os.ReadFile(fx.dev)), "--num-entries replays nothing")
	code, _, errs := fx.run("--log", fx.log, "--num-entries", "--start-entry", "17")
	require.Equal(t, 1, code)
	require.Equal(t, "Invalid entry number\n", errs)

	// A lagging count is printed as it is; an empty log prints 0.
	b := must(os.ReadFile(fx.log))
	b[16] = 3
	lag := filepath.Join(fx.dir, "lag.img")
	require.NoError(t, os.WriteFile(lag, b, 0o644))
	code, out, _ := fx.run("--log", lag, "--num-entries")
	require.Equal(t, 0, code)
	require.Equal(t, "3\n", out)
	b[16] = 0
	require.NoError(t, os.WriteFile(lag, b, 0o644))
	code, out, _ = fx.run("--log", lag, "--num-entries")
	require.Equal(t, 0, code)
	require.Equal(t, "0\n", out)
}

// -h and --help print the usage on stdout and exit 0; a bad option still
// exits 1 with the usage on stderr, as replay-log does.
func TestHelp(t *testing.T) {
	fx := newFixture(t)
	for _, h := range []string{"-h", "--help", "--he"} {
		code, out, errs := fx.run(h)
		require.Equal(t, 0, code, h)
		require.Contains(t, out, "Usage: replay-log --log <logfile>", h)
		require.Contains(t, out, "-h or --help")
		require.Empty(t, errs, h)
	}
	code, out, errs := fx.run("-x")
	require.Equal(t, 1, code)
	require.Empty(t, out)
	require.Contains(t, errs, "Usage:")
}

// A regular file smaller than the log's device is not grown: exit 1, the
// file untouched, a line saying the sizes; --grow lets it grow, and the
// result is the kernel's device.
func TestTargetTooSmall(t *testing.T) {
	fx := newFixture(t)
	small := filepath.Join(fx.dir, "small.img")
	require.NoError(t, os.WriteFile(small, make([]byte, 1<<20), 0o644))
	before := fileSHA(t, small)
	code, _, errs := fx.run("--log", fx.log, "--replay", small)
	require.Equal(t, 1, code)
	require.Contains(t, errs, "is 1048576 bytes, smaller than the log's device")
	require.Contains(t, errs, "ends at byte 8388608")
	require.Contains(t, errs, "--grow")
	require.Equal(t, 1, strings.Count(errs, "\n"), "one line")
	require.Equal(t, before, fileSHA(t, small))
	fi := must(os.Stat(small))
	require.Equal(t, int64(1<<20), fi.Size())

	code, _, errs = fx.run("--log", fx.log, "--replay", small, "--grow")
	require.Equal(t, 0, code, errs)
	require.Equal(t, kernelData, fileSHA(t, small))

	// One sector short of the furthest write is too small as well.
	short := filepath.Join(fx.dir, "short.img")
	require.NoError(t, os.WriteFile(short, make([]byte, 8<<20-512), 0o644))
	before = fileSHA(t, short)
	code, _, errs = fx.run("--log", fx.log, "--replay", short)
	require.Equal(t, 1, code, errs)
	require.Contains(t, errs, "is 8388096 bytes, smaller than the log's device")
	require.Equal(t, before, fileSHA(t, short))
}

// orderBuffer is one buffer behind both stdout and stderr, to see the order
// in which the two streams' lines are written.
type orderBuffer struct{ b bytes.Buffer }

func (o *orderBuffer) Write(p []byte) (int, error) { return o.b.Write(p) }

// Buffered stdout is flushed before anything goes to stderr: -v lines of
// the entries replayed come before the error that stops the replay.
func TestOutputOrder(t *testing.T) {
	fx := newFixture(t)
	bad := filepath.Join(fx.dir, "bad.img")
	b := must(os.ReadFile(fx.log))
	b[16] = 200 // overstated count: the replay fails after 17 entries
	require.NoError(t, os.WriteFile(bad, b, 0o644))
	var both orderBuffer
	code := run([]string{"--log", bad, "--replay", fx.dev, "-v"}, &both, &both)
	require.Equal(t, 1, code)
	lines := strings.Split(strings.TrimSpace(both.b.String()), "\n")
	require.Greater(t, len(lines), 10)
	require.True(t, strings.HasPrefix(lines[0], "replaying 0@"), lines[0])
	require.Contains(t, lines[len(lines)-1], "after applying 17 entries", "the error comes last")
}

// -v and -vv print the same lines on the last-writer-wins path (no --fsck)
// as on the sequential one (a --fsck that never runs makes it sequential),
// and the images are the same, for several start and end points.
func TestVerboseSameOnBothPaths(t *testing.T) {
	fx := newFixture(t)
	for _, extra := range [][]string{
		{"-v"}, {"-vv"}, {"-vv", "--start-mark", "mark1", "--end-mark", "mark3"},
		{"-vv", "--start-entry", "3", "--limit", "9"}, {"-v", "--no-discard", "--start-sector", "2048", "--end-sector", "4200"},
	} {
		require.NoError(t, os.WriteFile(fx.dev, make([]byte, 8<<20), 0o644))
		code, lww, errs := fx.run(append([]string{"--log", fx.log, "--replay", fx.dev}, extra...)...)
		require.Equal(t, 0, code, errs)
		lwwImg := fileSHA(t, fx.dev)
		require.NoError(t, os.WriteFile(fx.dev, make([]byte, 8<<20), 0o644))
		code, seq, errs := fx.run(append([]string{"--log", fx.log, "--replay", fx.dev, "--fsck", "true", "--check", "1000"}, extra...)...)
		require.Equal(t, 0, code, errs)
		require.Equal(t, seq, lww, "%v", extra)
		require.Equal(t, fileSHA(t, fx.dev), lwwImg, "%v", extra)
		require.Contains(t, lww, "replaying ")
	}
}
