// Package remote is the Go form of the kernel's "userspace" dirty-region
// log: a Server that keeps logs for many nodes, and a Client that
// implements dirtylog.Log by talking to it over a stream (a Unix socket,
// or TCP with mutual TLS 1.3).
//
// # Model
//
// A Server hosts any number of logs, each named by a UUID of at most 128
// bytes and backed by a dirtylog core log ("clustered-core") or disk log
// ("clustered-disk", the kernel's on-disk format on a device the server
// opens through ServerOptions.Open). Every Client of one UUID is a node of
// that log; Dial constructs (or joins) it with the kernel's table words,
// for example
//
//	c, err := remote.Dial(ctx, "unix", "/run/dmlog.sock", remote.ClientOptions{
//		UUID: "LVM-volume-1", Node: 1, DeviceSize: 1 << 30,
//		Args: []string{"clustered-disk", "logdev", "1024"},
//	})
//
// The server keeps each log coherent for all its nodes, after LVM's
// cmirrord, with its known flaws fixed:
//
//   - Marks are kept per node: a region marked by nodes A and B is dirty
//     until both cleared it, and becomes clean only if it is in sync. Two
//     marks by one node need one clear.
//   - One region is recovered at a time, cluster-wide, as in cmirrord:
//     until SetRegionSync ends its recovery, the node that claimed it gets
//     that same region each time it asks, and every other node gets none.
//     So a reply lost with a connection, or a ResyncWork abandoned when
//     its context ended, leaves nothing stuck: asking again returns it.
//     A node that suspends (POSTSUSPEND) gives its claim up, as in
//     cmirrord, and a late "in sync" from it is ignored while another
//     node recovers that region.
//     (A mirror that copies in parallel over a local log therefore copies
//     one region at a time over a remote one, as the kernel's does.)
//   - RemoteRecovering is true for any out-of-sync region, so a writer
//     waits for it to be resynced, and asking moves that region to the
//     front of the resync queue.
//   - All requests to one log are applied in one order, so whatever was
//     acknowledged to one node is seen by every later request of any node,
//     including a node that joins.
//   - A node that disconnects without suspending is declared dead after
//     ServerOptions.DeadAfter: the regions it marks become out of sync
//     (resync work, clean again once resynced) and its recovery claim is
//     released. cmirrord leaves both stuck. A node that leaves (Close,
//     DTR) with marks left over is treated the same way.
//   - InSync always reports the region's sync bit. (cmirrord answers "in
//     sync" for every region once the whole log was in sync, until a
//     resume; with dead nodes' regions going out of sync at any time that
//     shortcut would hide resync work, so it is not copied.)
//   - The disk backend persists the clean bits in the kernel's format; a
//     region that is marked or out of sync is never clean on disk, so a
//     restarted server loses nothing that was flushed: such regions come
//     back out of sync and are resynced. The nodes replay the marks they
//     hold when they reconnect, and a reopened log hands out no resync
//     work for DeadAfter, so a region a node is still writing is not
//     resynced and cleaned under it. As in cmirrord, "sync"/"nosync" do
//     not re-initialise an existing clustered-disk log.
//
// # Protocol
//
// Requests are the kernel's userspace-log protocol version 3 (CTR, DTR,
// PRESUSPEND, POSTSUSPEND, RESUME, GET_REGION_SIZE, IS_CLEAN, IN_SYNC,
// FLUSH, MARK_REGION, CLEAR_REGION, GET_RESYNC_WORK, SET_REGION_SYNC,
// GET_SYNC_COUNT, STATUS_INFO, STATUS_TABLE, IS_REMOTE_RECOVERING) with
// the kernel's numbers and payloads, framed for a stream: a fixed
// little-endian Header (magic, version, seq, type, error, data size,
// luid = node, uuid) and a payload of at most MaxPayload bytes. A client
// pipelines many requests on one connection and matches replies by seq;
// the server applies a connection's requests in order. Error replies
// carry a negative errno and a message, returned as *RemoteError.
//
// The Client batches MarkRegion and ClearRegion in memory (lock-free, no
// allocation) until Flush, which sends clears first, then marks, then a
// FLUSH, pipelined; with IntegratedFlush the marks ride in the FLUSH. A
// flush with nothing pending sends nothing. A lost server is redialled in
// the background with backoff; the client replays CTR, RESUME and the
// marks it still holds, then retries. While the server is unreachable,
// Flush fails with ErrUnreachable and non-blocking queries return
// dirtylog.ErrWouldBlock.
//
// # Security
//
// ListenUnix creates a socket file with mode 0600 from the start, and
// Serve restricts any Unix socket it is given. Any other listener requires
// ServerOptions.TLS: the server speaks TLS 1.3 only and refuses a client
// without a certificate signed by ClientCAs before reading a request.
// Malformed frames, oversized payloads, unknown types, over-long UUIDs
// and peers that stall mid-frame or vanish mid-request are answered with
// an error or dropped, without affecting other connections.
//
// # Concurrency
//
// Server and Client are safe for concurrent use. Close stops every
// goroutine each started.
package remote
