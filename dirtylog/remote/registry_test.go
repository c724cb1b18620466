package remote

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
)

var regSeq int

func TestRegisterUserspace(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerOptions{})
	// (ExampleRegisterUserspace registers the real name; a fresh name per
	// run keeps -count=N working.)
	regSeq++
	name := fmt.Sprintf("userspace-test%d", regSeq)
	require.NoError(t, registerUserspace(name, "unix", ts.path, ClientOptions{Node: 3}))
	require.ErrorIs(t, registerUserspace(name, "unix", ts.path, ClientOptions{}), dirtylog.ErrExists)
	env := dirtylog.Env{DeviceSize: tDevice}

	l, err := dirtylog.New(name, []string{"reg-uuid", "Integrated_Flush", "clustered-core", tRS, "nosync"}, env)
	require.NoError(t, err)
	require.Equal(t, "userspace 5 reg-uuid integrated_flush clustered-core 128 nosync ", l.Table())
	require.Equal(t, "1 clustered-core", l.Status())
	require.EqualValues(t, 256, l.RegionCount())
	require.EqualValues(t, 3, l.(*Client).Node())
	l.MarkRegion(1)
	require.NoError(t, l.Flush(context.Background()))
	require.NoError(t, l.Close())

	l, err = dirtylog.New(name, []string{"u2", "clustered-core", tRS}, env)
	require.NoError(t, err)
	require.Equal(t, "userspace 3 u2 clustered-core 128 ", l.Table())
	require.NoError(t, l.Close())

	for _, args := range [][]string{
		{"u", "clustered-core"},
		{"u", "integrated_flush", "clustered-core"},
		{strings.Repeat("u", 129), "clustered-core", tRS},
		{"u", "clustered-core", "1000"},
	} {
		_, err := dirtylog.New(name, args, env)
		require.ErrorIs(t, err, dirtylog.ErrBadArgs, "%q", args)
	}
}
