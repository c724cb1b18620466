package remote

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
)

// The cluster state machine is driven by scripts: one step per line,
// "<node> <op> [args]" followed by "=> <want>". Ops:
//
//	mark r / clear r            want: the clean-bit change (same, dirtied, cleaned)
//	sync r 0|1                  want: the clean-bit change
//	work                        want: region or "none"
//	rec r                       want: "true hint" / "false hint"
//	leave                       want: sorted regions put out of sync, then "released" or "kept"
//	join / presuspend / postsuspend / resume  want: "-"
//	clean r / insync r          want: true/false
//	count                       want: sync count
func runScript(t *testing.T, c *coherence, script string) {
	t.Helper()
	for i, line := range strings.Split(strings.TrimSpace(script), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cmd, want, ok := strings.Cut(line, "=>")
		require.True(t, ok, "line %d: no =>", i+1)
		f := strings.Fields(cmd)
		node, err := strconv.ParseUint(f[0], 10, 64)
		require.NoError(t, err, "line %d", i+1)
		arg := func(k int) uint64 {
			v, err := strconv.ParseUint(f[k], 10, 64)
			require.NoError(t, err, "line %d", i+1)
			return v
		}
		var got string
		switch f[1] {
		case "mark":
			got = changeName(c.mark(node, dirtylog.Region(arg(2))))
		case "clear":
			got = changeName(c.clear(node, dirtylog.Region(arg(2))))
		case "sync":
			got = changeName(c.setRegionSync(node, dirtylog.Region(arg(2)), arg(3) != 0))
		case "work":
			if r, ok := c.resyncWork(node); ok {
				got = fmt.Sprint(r)
			} else {
				got = "none"
			}
		case "rec":
			rec, hint := c.remoteRecovering(node, dirtylog.Region(arg(2)))
			got = fmt.Sprint(rec, " ", hint)
		case "leave":
			rs, rel := c.leave(node)
			slices.Sort(rs)
			got = fmt.Sprint(rs, " ", map[bool]string{true: "released", false: "kept"}[rel])
		case "join":
			c.join(node)
			got = "-"
		case "presuspend":
			c.presuspend(node)
			got = "-"
		case "postsuspend":
			c.postsuspend(node)
			got = "-"
		case "resume":
			c.resume(node)
			got = "-"
		case "clean":
			got = fmt.Sprint(c.isClean(dirtylog.Region(arg(2))))
		case "insync":
			got = fmt.Sprint(c.inSync(dirtylog.Region(arg(2))))
		case "count":
			got = fmt.Sprint(c.syncCount)
		default:
			t.Fatalf("line %d: unknown op %q", i+1, f[1])
		}
		require.Equal(t, strings.TrimSpace(want), got, "line %d: %s", i+1, line)
	}
}

func changeName(c cleanChange) string {
	return [...]string{"same", "dirtied", "cleaned"}[c]
}

// newTestCoherence: n regions, all clean; in sync iff inSync.
func newTestCoherence(n uint64, inSync bool) *coherence {
	return newCoherence(n, func(dirtylog.Region) bool { return true }, func(dirtylog.Region) bool { return inSync })
}

func TestCoherence(t *testing.T) {
	for _, tc := range []struct {
		name   string
		n      uint64
		inSync bool
		script string
	}{
		{"TwoWritersOneFinished", 16, true, `
			1 mark 5 => dirtied
			2 mark 5 => same
			1 clear 5 => same
			0 clean 5 => false
			2 clear 5 => cleaned
			0 clean 5 => true`},
		{"TwoMarksOneClear", 16, true, `
			1 mark 3 => dirtied
			1 mark 3 => same
			1 clear 3 => cleaned`},
		{"ClearWithoutMarkOfOtherNode", 16, true, `
			1 mark 3 => dirtied
			2 clear 3 => same
			0 clean 3 => false
			1 clear 3 => cleaned`},
		{"OutOfSyncNeverClean", 16, true, `
			1 sync 4 0 => dirtied
			1 mark 4 => same
			1 clear 4 => same
			0 clean 4 => false
			0 count => 15
			2 sync 4 1 => cleaned
			0 count => 16`},
		{"ResyncedWhileMarkedStaysDirty", 16, true, `
			1 mark 4 => dirtied
			2 sync 4 0 => same
			2 sync 4 1 => same
			0 clean 4 => false
			1 clear 4 => cleaned`},
		{"SetSyncCountsOnce", 16, false, `
			0 count => 0
			1 sync 2 1 => same
			1 sync 2 1 => same
			0 count => 1
			1 sync 2 0 => dirtied
			1 sync 2 0 => same
			0 count => 0`},
		{"OneRegionRecoveredAtATime", 8, false, `
			1 work => 0
			2 work => none
			1 work => 0
			1 work => 0
			2 work => none
			1 sync 0 1 => same
			2 work => 1
			1 work => none
			2 work => 1
			2 sync 1 1 => same
			1 work => 2
			1 sync 2 1 => same
			0 count => 3`},
		{"SetSyncOfAnotherRegionKeepsTheClaim", 8, false, `
			1 work => 0
			2 sync 5 1 => same
			2 work => none
			1 work => 0`},
		{"FailedRecoveryRequeues", 8, true, `
			1 sync 5 0 => dirtied
			1 work => 5
			1 sync 5 0 => same
			1 work => 5
			1 sync 5 1 => cleaned
			1 work => none`},
		{"OutOfSyncBehindCursor", 8, true, `
			1 sync 6 0 => dirtied
			1 work => 6
			1 sync 6 1 => cleaned
			1 work => none
			1 sync 2 0 => dirtied
			1 work => 2`},
		{"RemoteRecoveringJumpsQueue", 8, false, `
			2 rec 6 => true 0
			2 rec 6 => true 0
			1 work => 6
			2 rec 6 => true 0
			1 work => 6
			1 sync 6 1 => same
			2 rec 6 => false 0
			1 work => 0
			1 sync 0 1 => same
			2 rec 7 => true 1
			1 work => 7
			1 sync 7 1 => same
			1 work => 1`},
		{"InSyncNotRecovering", 8, true, `
			2 rec 3 => false 8
			1 work => none`},
		{"PresuspendedNodeSeesNoRecovery", 8, false, `
			2 presuspend => -
			2 rec 3 => false 8
			2 resume => -
			2 rec 3 => true 0`},
		{"ResumeRestartsCursor", 8, false, `
			1 work => 0
			1 sync 0 1 => same
			1 work => 1
			1 sync 1 0 => dirtied
			1 resume => -
			1 work => 1`},
		{"DeathPutsMarksOutOfSync", 16, true, `
			1 mark 3 => dirtied
			1 mark 9 => dirtied
			2 mark 9 => same
			2 mark 12 => dirtied
			1 leave => [3 9] kept
			0 insync 3 => false
			0 insync 9 => false
			0 insync 12 => true
			0 count => 14
			0 clean 3 => false
			2 work => 3
			2 work => 3
			2 sync 3 1 => cleaned
			2 work => 9
			2 sync 9 1 => same
			2 clear 9 => cleaned
			2 clear 12 => cleaned
			0 count => 16`},
		{"DeathOfAnOutOfSyncMarker", 16, true, `
			1 sync 3 0 => dirtied
			1 mark 3 => same
			1 leave => [] kept
			0 insync 3 => false`},
		{"DeadRecovererReleased", 8, false, `
			1 work => 0
			1 sync 0 1 => same
			1 work => 1
			2 work => none
			1 leave => [] released
			2 work => 1
			2 sync 1 1 => same
			2 work => 2`},
		{"RejoinKeepsTheClaim", 8, false, `
			1 work => 0
			1 join => -
			2 work => none
			1 work => 0
			1 sync 0 1 => same
			1 work => 1`},
		{"PostsuspendEndsTheClaim", 8, false, `
			1 work => 0
			1 sync 0 1 => same
			1 work => 1
			2 work => none
			2 postsuspend => -
			2 work => none
			1 postsuspend => -
			2 work => 1`},
		{"InSyncFromAReleasedCopyIsIgnored", 8, false, `
			1 work => 0
			1 postsuspend => -
			2 work => 0
			1 sync 0 1 => same
			0 insync 0 => false
			2 work => 0
			2 sync 0 1 => same
			0 insync 0 => true
			1 resume => -
			1 work => 1`},
		{"OutOfRangeIgnored", 8, true, `
			1 mark 8 => same
			1 clear 99 => same
			1 sync 8 0 => same
			0 count => 8`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runScript(t, newTestCoherence(tc.n, tc.inSync), tc.script)
		})
	}
}

// TestCoherenceInvariants drives random operations and checks the
// invariants after each: a marked or out-of-sync region is never clean,
// the sync count is the popcount, the claim (if any) is on an out-of-sync
// region and only its claimer gets work.
func TestCoherenceInvariants(t *testing.T) {
	const n = 40
	c := newTestCoherence(n, true)
	seed := uint64(1)
	rnd := func(k uint64) uint64 {
		seed ^= seed << 13
		seed ^= seed >> 7
		seed ^= seed << 17
		return seed % k
	}
	for i := 0; i < 20000; i++ {
		node := rnd(4) + 1
		r := dirtylog.Region(rnd(n))
		switch rnd(8) {
		case 0, 1:
			c.mark(node, r)
		case 2, 3:
			c.clear(node, r)
		case 4:
			c.setRegionSync(node, r, rnd(3) != 0)
		case 5:
			if w, ok := c.resyncWork(node); ok && rnd(2) == 0 {
				c.setRegionSync(node, w, rnd(4) != 0) // else it stays claimed
			}
		case 6:
			c.remoteRecovering(node, r)
		case 7:
			if rnd(20) == 0 {
				c.leave(node)
			}
		}
		var cnt uint64
		for x := dirtylog.Region(0); x < n; x++ {
			if c.inSync(x) {
				cnt++
			}
			if c.isClean(x) && (c.markers[x] > 0 || !c.inSync(x)) {
				t.Fatalf("step %d: region %d clean with %d markers, in sync %v", i, x, c.markers[x], c.inSync(x))
			}
		}
		require.Equal(t, cnt, c.syncCount, "step %d", i)
		total := map[dirtylog.Region]uint32{}
		for _, nm := range c.nodes {
			for x := range nm.marks {
				total[x]++
			}
		}
		require.Equal(t, total, c.markers, "step %d", i)
		if c.claimed {
			require.False(t, c.inSync(c.claim), "step %d: the claimed region %d is in sync", i, c.claim)
			other := c.recoverer%4 + 1
			_, ok := c.resyncWork(other)
			require.False(t, ok, "step %d: node %d got work while node %d recovers", i, other, c.recoverer)
		}
	}
}
