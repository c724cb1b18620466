package dirtylog

import (
	"fmt"
	"os"
	"sync"

	"github.com/dmlog/dmlog/internal/flock"
)

// A Disk opened on an *os.File claims the file exclusively, as the kernel
// claims a log device: an advisory flock(2) keeps out other processes and
// other open files of this process (another os.Open of the same path),
// and a set of claimed *os.File values keeps out a second OpenDisk handed
// the same *os.File, which flock cannot: the lock belongs to the open
// file, and the second OpenDisk shares it. Closing the file releases the
// flock, as the death of the process does.

var (
	claimedMu sync.Mutex
	claimed   = map[*os.File]bool{}
)

// claimFile takes the exclusive claim of f as the log device name. The
// returned release drops it (and the flock) again; call it once.
func claimFile(f *os.File, name string) (release func(), err error) {
	claimedMu.Lock()
	defer claimedMu.Unlock()
	if claimed[f] {
		return nil, fmt.Errorf("dirtylog: log device %s (%s): %w (a Disk in this process has this file open)", name, f.Name(), ErrInUse)
	}
	if err := flock.Lock(f, "log device "+name); err != nil {
		return nil, fmt.Errorf("dirtylog: %w", err)
	}
	claimed[f] = true
	return func() {
		_ = flock.Unlock(f)
		claimedMu.Lock()
		delete(claimed, f)
		claimedMu.Unlock()
	}, nil
}
