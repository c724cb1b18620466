package testdev

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFaultyRules(t *testing.T) {
	mem := NewMemory(8192)
	f := NewFaulty(mem)
	buf := make([]byte, 512)

	f.Add(Rule{Label: "third write in range", Op: OpWrite, Off: 4096, Len: 1024, Nth: 3})
	for i := 1; i <= 4; i++ {
		_, err := f.WriteAt(buf, 4096)
		if i == 3 {
			var ie *InjectedError
			require.True(t, errors.As(err, &ie))
			require.True(t, errors.Is(err, ErrInjected))
			require.Equal(t, "third write in range", ie.Label)
			require.Equal(t, OpWrite, ie.Op)
		} else {
			require.NoError(t, err)
		}
	}
	_, err := f.WriteAt(buf, 0) // outside the range
	require.NoError(t, err)
	_, err = f.WriteAt(buf, 5120) // just past the range
	require.NoError(t, err)
	_, err = f.WriteAt(buf, 3584+1) // overlaps the start
	require.NoError(t, err, "the 4th match already passed Nth")
	f.Clear()

	f.Add(Rule{Op: OpRead, Every: 2})
	var fails int
	for range 6 {
		if _, err := f.ReadAt(buf, 0); err != nil {
			fails++
		}
	}
	require.Equal(t, 3, fails)
	f.Clear()

	f.Add(Rule{Op: OpSync, From: 2})
	require.NoError(t, f.Sync())
	require.ErrorIs(t, f.Sync(), ErrInjected)
	require.ErrorIs(t, f.Sync(), ErrInjected)
	require.EqualValues(t, 3, f.Count(OpSync))
	f.Clear()
	require.NoError(t, f.Sync(), "healed")

	f.Add(Rule{Op: OpAny})
	require.ErrorIs(t, f.Discard(0, 512), ErrInjected)
	_, err = f.WriteAt(buf, 0)
	require.ErrorIs(t, err, ErrInjected)
	require.EqualValues(t, 8192, f.Size())
}

func TestFaultyFailedWriteChangesNothing(t *testing.T) {
	mem := NewMemory(1024)
	f := NewFaulty(mem)
	f.Add(Rule{Op: OpWrite})
	_, err := f.WriteAt([]byte{1, 2, 3}, 0)
	require.Error(t, err)
	require.Equal(t, make([]byte, 1024), mem.Bytes())
	require.Zero(t, mem.Pending())
}
