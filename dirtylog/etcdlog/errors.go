package etcdlog

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these (and,
// where it applies, a dirtylog sentinel such as dirtylog.ErrLogFailed), so
// callers test them with errors.Is.
var (
	// ErrFenced: this node's lease expired (it was partitioned, paused or
	// too slow to renew it), so its liveness key is gone and the cluster
	// may already have turned its marks into resync work. The node must
	// stop writing to the legs. Resume rejoins the cluster with a new
	// lease. Errors wrapping ErrFenced also wrap dirtylog.ErrLogFailed.
	ErrFenced = errors.New("etcdlog: node fenced: its lease expired")
	// ErrLayoutMismatch: the log stored in etcd has a different region
	// size or region count than the Options, or a format version this
	// package does not read. Nothing was changed.
	ErrLayoutMismatch = errors.New("etcdlog: stored layout does not match")
	// ErrCorrupt: a value stored under the log's prefix cannot be decoded.
	ErrCorrupt = errors.New("etcdlog: corrupt value in etcd")
	// ErrNodeInUse: another live process holds this node's liveness key.
	ErrNodeInUse = errors.New("etcdlog: node id in use by a live process")
	// ErrBadOptions: Options are incomplete or malformed (empty or
	// slash-containing Name or Node, a nil client, ...).
	ErrBadOptions = errors.New("etcdlog: bad options")
)
