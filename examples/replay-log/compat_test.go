package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/dmlog/dmlog/logwrites"
	"github.com/stretchr/testify/require"
)

// TestCompatWithCReplayLog runs fstests' C replay-log and this command on
// the same logs and compares their output, exit codes and replayed images.
// It needs the C tool: build src/log-writes/{replay-log.c,log-writes.c} of
// xfstests and set DMLOG_REPLAY_LOG to the binary. It covers every prefix
// of Go-written logs for sector sizes 512 and 4096 (test idea 6) and a set
// of option combinations on the kernel-written log.
func TestCompatWithCReplayLog(t *testing.T) {
	cbin := os.Getenv("DMLOG_REPLAY_LOG")
	if cbin == "" {
		t.Skip("set DMLOG_REPLAY_LOG to fstests' replay-log binary to cross-check")
	}
	dir := t.TempDir()
	type result struct {
		code int
		out  string
		img  []byte
	}
	both := func(t *testing.T, logPath string, size int64, args ...string) (c, g result) {
		t.Helper()
		dev := filepath.Join(dir, "dev.img")
		one := func(runIt func([]string) (int, string)) result {
			require.NoError(t, os.WriteFile(dev, make([]byte, size), 0o644))
			full := append([]string{"--log", logPath}, args...)
			for i, a := range full {
				if a == "DEV" {
					full[i] = dev
				}
			}
			code, out := runIt(full)
			img, err := os.ReadFile(dev)
			require.NoError(t, err)
			return result{code, out, img}
		}
		c = one(func(a []string) (int, string) {
			cmd := exec.Command(cbin, a...)
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else {
				require.NoError(t, err)
			}
			return code, string(out)
		})
		g = one(func(a []string) (int, string) {
			var out bytes.Buffer
			code := run(a, &out, &out)
			return code, out.String()
		})
		return c, g
	}

	for _, s := range []int{512, 4096} {
		t.Run(fmt.Sprint("go-log-", s), func(t *testing.T) {
			const size = 1 << 20
			logDev := testdev.NewMemory(4 << 20)
			rec, err := logwrites.New(testdev.NewMemory(size), logDev, logwrites.Options{SectorSize: s})
			require.NoError(t, err)
			rng := rand.New(rand.NewPCG(uint64(s), 3))
			for i := range 40 {
				off := int64(rng.IntN(size/s-8)) * int64(s)
				n := (1 + rng.IntN(8)) * s
				switch rng.IntN(10) {
				case 0:
					require.NoError(t, rec.Sync())
				case 1:
					require.NoError(t, rec.Mark(fmt.Sprint("m", i)))
				case 2:
					require.NoError(t, rec.Discard(off, int64(n)))
				case 3:
					_, err = rec.WriteAtFlags(bytes.Repeat([]byte{byte(i)}, n), off, logwrites.FUA|logwrites.Metadata)
					require.NoError(t, err)
				default:
					_, err = rec.WriteAt(bytes.Repeat([]byte{byte(i)}, n), off)
					require.NoError(t, err)
				}
			}
			require.NoError(t, rec.Close())
			logPath := filepath.Join(dir, fmt.Sprint("go", s, ".img"))
			require.NoError(t, os.WriteFile(logPath, logDev.Bytes(), 0o644))
			l, err := logwrites.Open(bytes.NewReader(logDev.Bytes()))
			require.NoError(t, err)
			for n := uint64(1); n <= l.NumEntries(); n++ {
				c, g := both(t, logPath, size, "--replay", "DEV", "--limit", fmt.Sprint(n))
				require.Equal(t, c.code, g.code, "limit %d", n)
				require.True(t, bytes.Equal(c.img, g.img), "image differs for prefix %d", n)
				c, g = both(t, logPath, size, "--find", "--limit", fmt.Sprint(n))
				require.Equal(t, c, g, "find limit %d", n)
			}
			for _, args := range [][]string{{}, {"--num-entries"}, {"--find", "--next-fua"}, {"--find", "--next-flush", "--start-entry", "5"}, {"-vv", "--replay", "DEV"}} {
				c, g := both(t, logPath, size, args...)
				require.Equal(t, c, g, "%v", args)
			}
		})
	}

	t.Run("kernel-log", func(t *testing.T) {
		logPath := filepath.Join(dir, "kernel.img")
		gunzipTo(t, filepath.Join(kernelDir, "log.img.gz"), logPath)
		for _, a := range []string{
			"", "--num-entries", "--find --end-mark mark2", "--find --next-fua", "--find --limit 4 --start-mark mark1",
			"-vv --start-entry 3 --find --next-flush", "-vv --start-mark mark2 --find --next-flush",
			"-vv --replay DEV --start-mark mark1 --end-mark mark3", "-vv --replay DEV --start-sector 2000 --end-sector 9000",
			"-v --replay DEV --no-discard", "-vv --replay DEV --start-entry 4 --limit 6", "--replay DEV --fsck true --check 3 -v",
			"--replay DEV --fsck false --check fua", "--num --end mark2 --replay DEV", "--start-entry 17", "--bogus",
			"--replay DEV --next-flush --start-mark mark2",
		} {
			c, g := both(t, logPath, 8<<20, strings.Fields(a)...)
			if strings.Contains(a, "--bogus") {
				// glibc names the program in its message; compare the rest.
				require.Equal(t, c.code, g.code)
				continue
			}
			require.Equal(t, c, g, "%s", a)
		}
	})
}
