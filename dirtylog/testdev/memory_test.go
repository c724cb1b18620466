package testdev

import (
	"bytes"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMemoryVolatileUntilSync(t *testing.T) {
	m := NewMemory(4096)
	_, err := m.WriteAt([]byte("durable"), 0)
	require.NoError(t, err)
	require.NoError(t, m.Sync())
	_, err = m.WriteAt([]byte("volatile"), 100)
	require.NoError(t, err)
	got := make([]byte, 8)
	_, err = m.ReadAt(got, 100)
	require.NoError(t, err)
	require.Equal(t, "volatile", string(got), "unsynced writes are visible")
	require.Equal(t, 1, m.Pending())

	rep := m.Crash(CrashOptions{Mode: DropAll})
	require.Equal(t, CrashReport{Pending: 1, Torn: -1}, rep)
	require.Equal(t, "durable", string(m.Bytes()[:7]))
	require.Equal(t, make([]byte, 8), m.Bytes()[100:108])
	require.Zero(t, m.Pending())
	// The device is usable after the crash.
	_, err = m.WriteAt([]byte("again"), 200)
	require.NoError(t, err)
	require.NoError(t, m.Sync())
	m.Crash(CrashOptions{Mode: DropAll})
	require.Equal(t, "again", string(m.Bytes()[200:205]))
}

func TestMemoryCrashKeepRandomIsSeededAndOrdered(t *testing.T) {
	run := func(seed uint64) ([]byte, CrashReport) {
		m := NewMemory(64 * 512)
		for i := range 64 {
			_, err := m.WriteAt(bytes.Repeat([]byte{byte(i + 1)}, 512), int64(i)*512)
			require.NoError(t, err)
		}
		// An overwrite of sector 0: if both survive, the later one wins.
		_, err := m.WriteAt(bytes.Repeat([]byte{0xEE}, 512), 0)
		require.NoError(t, err)
		rep := m.Crash(CrashOptions{Mode: KeepRandom, Seed: seed})
		return m.Bytes(), rep
	}
	a, ra := run(7)
	b, rb := run(7)
	require.Equal(t, a, b, "same seed, same result")
	require.Equal(t, ra, rb)
	require.Greater(t, ra.Kept, 5)
	require.Less(t, ra.Kept, 60)
	c, _ := run(8)
	require.NotEqual(t, a, c)
	for s := range 64 {
		v := a[s*512]
		require.Contains(t, []byte{0, byte(s + 1), 0xEE}, v)
		require.Equal(t, bytes.Repeat([]byte{v}, 512), a[s*512:(s+1)*512], "writes are atomic unless torn")
	}
}

func TestMemoryCrashTear(t *testing.T) {
	m := NewMemory(16 * 512)
	_, err := m.WriteAt(bytes.Repeat([]byte{9}, 16*512), 0)
	require.NoError(t, err)
	rep := m.Crash(CrashOptions{Mode: DropAll, Seed: 3, Tear: true})
	require.Equal(t, 0, rep.Torn)
	b := m.Bytes()
	kept := map[int]bool{}
	for _, s := range rep.TornAt {
		kept[s] = true
	}
	require.NotEmpty(t, rep.TornAt)
	require.Less(t, len(rep.TornAt), 16)
	for s := range 16 {
		want := byte(0)
		if kept[s] {
			want = 9
		}
		require.Equal(t, bytes.Repeat([]byte{want}, 512), b[s*512:(s+1)*512], "sector %d", s)
	}
}

func TestMemoryBounds(t *testing.T) {
	m := NewMemory(1024)
	_, err := m.WriteAt(make([]byte, 10), 1020)
	require.ErrorIs(t, err, ErrOutOfRange)
	_, err = m.WriteAt(make([]byte, 1), -1)
	require.ErrorIs(t, err, ErrOutOfRange)
	n, err := m.ReadAt(make([]byte, 10), 1020)
	require.Equal(t, 4, n)
	require.ErrorIs(t, err, io.EOF)
	require.ErrorIs(t, m.Discard(1000, 100), ErrOutOfRange)
	require.NoError(t, m.Discard(0, 1024))
	st := m.Stats()
	require.EqualValues(t, 1, st.Discards)
	require.EqualValues(t, 1, st.Reads)
}
