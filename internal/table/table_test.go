package table

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseUint(t *testing.T) {
	for s, want := range map[string]uint64{"1024": 1024, "+8": 8, " 2": 2, "0": 0} {
		v, ok := ParseUint(s, 32)
		require.True(t, ok, s)
		require.Equal(t, want, v, s)
	}
	for _, s := range []string{"", "1024k", "1024 ", "-1", "0x10", "4294967296", "+", "１"} {
		_, ok := ParseUint(s, 32)
		require.False(t, ok, "%q", s)
	}
}

func TestFields(t *testing.T) {
	require.Equal(t, []string{"mirror", "core", "1", "1024"}, Fields(" mirror  core\t1 1024\n"))
}
