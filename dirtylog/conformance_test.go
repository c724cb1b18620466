package dirtylog_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/logtest"
	"github.com/dmlog/dmlog/dirtylog/testdev"
)

func TestConformanceCore(t *testing.T) {
	logtest.Run(t, func(t *testing.T, o dirtylog.Options) dirtylog.Log {
		l, err := dirtylog.NewCore(o)
		require.NoError(t, err)
		return l
	})
}

func TestConformanceDisk(t *testing.T) {
	for _, bs := range []int{512, 4096} {
		t.Run(map[int]string{512: "512", 4096: "4096"}[bs], func(t *testing.T) {
			logtest.Run(t, func(t *testing.T, o dirtylog.Options) dirtylog.Log {
				o.LogicalBlockSize = bs
				l, err := dirtylog.OpenDisk(testdev.NewMemory(64<<10), o)
				require.NoError(t, err)
				return l
			})
		})
	}
}
