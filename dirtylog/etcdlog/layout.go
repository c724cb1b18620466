package etcdlog

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/dmlog/dmlog/dirtylog"
)

// FormatVersion is the version of the key layout and value encodings this
// package writes and reads. It is stored in the meta key.
const FormatVersion = 1

// The key layout under the log's prefix P = Prefix+Name+"/":
//
//	P/meta                 Meta as JSON; created once
//	P/node/<node>          liveness key, bound to the node's lease
//	P/marks/<node>/<chunk> the node's marked regions in that chunk; NOT
//	                       lease-bound (marks outlive a crash); absent when
//	                       the node has no mark in the chunk
//	P/sync/<chunk>         the chunk's sync bits (1 = in sync)
//	P/pristine/<chunk>     regions out of sync since the log was created
//	                       and never touched since (clean although out
//	                       of sync, as a fresh kernel log); absent = none
//	P/recoverer            the one node recovering regions now, bound to
//	                       its lease; deleted when it holds no claim
//	P/claim/<region>       a recovery claim: the recovering node's id,
//	                       bound to its lease
//	P/prio/<region>        a writer waits on this out-of-sync region: resync
//	                       it first; bound to the writer's lease
//	P/janitor/...          the janitor election (etcd concurrency.Election)
//
// <chunk> is 8 and <region> 16 lower-case hex digits, so keys sort in
// number order.
type keys struct {
	p string
}

func (k keys) meta() string                 { return k.p + "meta" }
func (k keys) node(id string) string        { return k.p + "node/" + id }
func (k keys) marks(id string) string       { return k.p + "marks/" + id + "/" }
func (k keys) mark(id string, c int) string { return fmt.Sprintf("%smarks/%s/%08x", k.p, id, c) }
func (k keys) sync(c int) string            { return fmt.Sprintf("%ssync/%08x", k.p, c) }
func (k keys) pristine(c int) string        { return fmt.Sprintf("%spristine/%08x", k.p, c) }
func (k keys) recoverer() string            { return k.p + "recoverer" }
func (k keys) claim(r dirtylog.Region) string {
	return fmt.Sprintf("%sclaim/%016x", k.p, uint64(r))
}
func (k keys) prio(r dirtylog.Region) string { return fmt.Sprintf("%sprio/%016x", k.p, uint64(r)) }
func (k keys) janitor() string               { return k.p + "janitor/" }

// keyKind classifies a key under the prefix.
type keyKind int

const (
	kindOther keyKind = iota
	kindMeta
	kindNode
	kindMark
	kindSync
	kindClaim
	kindPrio
	kindPristine
	kindRecoverer
)

// parsedKey is a key under the prefix, split into its parts.
type parsedKey struct {
	kind   keyKind
	node   string
	chunk  int
	region dirtylog.Region
}

// parse splits a key. Keys it does not recognise (the election's, or ones
// a later format might add) are kindOther and ignored by the cache.
func (k keys) parse(key string) (parsedKey, bool) {
	rest, ok := strings.CutPrefix(key, k.p)
	if !ok {
		return parsedKey{}, false
	}
	head, tail, _ := strings.Cut(rest, "/")
	switch head {
	case "meta":
		return parsedKey{kind: kindMeta}, tail == ""
	case "node":
		return parsedKey{kind: kindNode, node: tail}, validID("node", tail) == nil
	case "marks":
		node, c, ok := strings.Cut(tail, "/")
		n, err := strconv.ParseUint(c, 16, 32)
		if !ok || err != nil || len(c) != 8 || validID("node", node) != nil {
			return parsedKey{}, false
		}
		return parsedKey{kind: kindMark, node: node, chunk: int(n)}, true
	case "recoverer":
		return parsedKey{kind: kindRecoverer}, tail == ""
	case "sync", "pristine":
		n, err := strconv.ParseUint(tail, 16, 32)
		if err != nil || len(tail) != 8 {
			return parsedKey{}, false
		}
		kind := kindSync
		if head == "pristine" {
			kind = kindPristine
		}
		return parsedKey{kind: kind, chunk: int(n)}, true
	case "claim", "prio":
		n, err := strconv.ParseUint(tail, 16, 64)
		if err != nil || len(tail) != 16 {
			return parsedKey{}, false
		}
		kind := kindClaim
		if head == "prio" {
			kind = kindPrio
		}
		return parsedKey{kind: kind, region: dirtylog.Region(n)}, true
	}
	return parsedKey{kind: kindOther}, true
}

// Meta is the value of the meta key: the log's geometry and the version of
// its layout. It is written once, when the first node creates the log. It
// is a plain value, safe to copy and share.
type Meta struct {
	// Format is the layout version (FormatVersion).
	Format int `json:"format"`
	// RegionSize in bytes and RegionCount: the log's geometry.
	RegionSize  int64  `json:"regionSize"`
	RegionCount uint64 `json:"regionCount"`
	// ChunkRegions is how many regions one chunk key holds.
	ChunkRegions uint64 `json:"chunkRegions"`
	// Created is the sync mode the log was created with ("", "sync",
	// "nosync"); informational.
	Created string `json:"created"`
}

// maxMetaBytes bounds the meta value accepted by ParseMeta.
const maxMetaBytes = 4096

// ParseMeta decodes and checks a meta value. Errors wrap ErrCorrupt, or
// ErrLayoutMismatch for a format version other than FormatVersion.
func ParseMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) > maxMetaBytes {
		return m, fmt.Errorf("%w: meta value of %d bytes", ErrCorrupt, len(b))
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%w: meta: %v", ErrCorrupt, err)
	}
	if m.Format != FormatVersion {
		return m, fmt.Errorf("%w: format version %d, this package reads version %d", ErrLayoutMismatch, m.Format, FormatVersion)
	}
	rs := m.RegionSize
	if rs < 2*dirtylog.SectorSize || rs&(rs-1) != 0 || rs > 1<<40 {
		return m, fmt.Errorf("%w: meta region size %d", ErrCorrupt, rs)
	}
	if m.RegionCount == 0 || m.RegionCount > MaxRegions {
		return m, fmt.Errorf("%w: meta region count %d", ErrCorrupt, m.RegionCount)
	}
	if m.ChunkRegions != chunkRegionsFor(m.RegionCount) {
		return m, fmt.Errorf("%w: meta chunk size %d for %d regions (want %d)", ErrCorrupt, m.ChunkRegions, m.RegionCount, chunkRegionsFor(m.RegionCount))
	}
	return m, nil
}

// encode returns the meta value.
func (m Meta) encode() []byte {
	b, _ := json.Marshal(m) // cannot fail: plain fields
	return b
}
