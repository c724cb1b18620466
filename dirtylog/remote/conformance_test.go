package remote

import (
	"fmt"
	"testing"

	"github.com/dmlog/dmlog/dirtylog"
	"github.com/dmlog/dmlog/dirtylog/logtest"
	"github.com/dmlog/dmlog/dirtylog/testdev"
)

var uuidSeq int

func TestConformanceCore(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerOptions{})
	logtest.Run(t, func(t *testing.T, o dirtylog.Options) dirtylog.Log {
		uuidSeq++
		return ts.dial(t, ClientOptions{UUID: fmt.Sprintf("conf-core-%d", uuidSeq), DeviceSize: o.DeviceSize, Args: coreArgs(o)})
	})
}

func TestConformanceIntegratedFlush(t *testing.T) {
	checkGoroutines(t)
	ts := startServer(t, ServerOptions{})
	logtest.Run(t, func(t *testing.T, o dirtylog.Options) dirtylog.Log {
		uuidSeq++
		return ts.dial(t, ClientOptions{UUID: fmt.Sprintf("conf-if-%d", uuidSeq), DeviceSize: o.DeviceSize,
			Args: coreArgs(o), IntegratedFlush: true})
	})
}

func TestConformanceDisk(t *testing.T) {
	checkGoroutines(t)
	devs := map[string]*testdev.Memory{}
	ts := startServer(t, ServerOptions{Open: func(name string) (dirtylog.Device, error) {
		d := devs[name]
		if d == nil {
			return nil, fmt.Errorf("no device %s", name)
		}
		return d, nil
	}})
	logtest.Run(t, func(t *testing.T, o dirtylog.Options) dirtylog.Log {
		uuidSeq++
		name := fmt.Sprintf("dev%d", uuidSeq)
		devs[name] = testdev.NewMemory(64 << 10)
		args := []string{"clustered-disk", name, fmt.Sprint(o.RegionSize / dirtylog.SectorSize)}
		if s := o.Sync.String(); s != "" {
			args = append(args, s)
		}
		return ts.dial(t, ClientOptions{UUID: fmt.Sprintf("conf-disk-%d", uuidSeq), DeviceSize: o.DeviceSize, Args: args})
	})
}
