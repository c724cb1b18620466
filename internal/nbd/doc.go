// Package nbd is a Network Block Device server: it serves Backends (a
// file, a mirror.Mirror, a logwrites.Recorder) to NBD clients such as the
// Linux nbd driver (nbd-client), qemu and libnbd's tools, over unix sockets
// or TCP.
//
// It speaks the fixed newstyle negotiation (NBD_OPT_GO, NBD_OPT_INFO with
// NBD_INFO_BLOCK_SIZE, NBD_OPT_EXPORT_NAME, NBD_OPT_LIST, NBD_OPT_ABORT,
// NBD_OPT_STARTTLS when Options.TLS is set; other options get
// NBD_REP_ERR_UNSUP) and the transmission phase with simple replies:
// READ, WRITE (with FUA), FLUSH, TRIM, WRITE_ZEROES (with NO_HOLE) and DISC;
// when FUA is advertised it is accepted on every command, as the protocol
// requires (it changes nothing on a read).
//
// Requests are pipelined: every connection reads requests while earlier
// ones run (up to Options.MaxInFlight), and a single writer sends each
// reply when its request completes, so replies come in completion order.
// A request is acknowledged only after the backend call returned: a FUA
// write after the backend's WriteAtFUA, or its WriteAt and Sync. FLUSH
// calls Sync, which covers every write acknowledged before it.
//
// Bad requests are answered, not fatal: an out-of-range request gets
// NBD_EINVAL (read, trim) or NBD_ENOSPC (write, write-zeroes), a read or
// write over Options.MaxPayload gets NBD_EINVAL (a write's payload is read
// and discarded first), an unknown command or flag gets NBD_EINVAL, as the
// protocol asks. A request header with a bad magic number, a malformed
// negotiation, or an unknown export name in NBD_OPT_EXPORT_NAME closes that
// connection only. Requests read after Server.Close began are answered
// with NBD_ESHUTDOWN; after STARTTLS a connection ends with a TLS
// close_notify.
//
// At most Options.MaxConns connections are in the transmission phase at
// once (so the memory of requests in flight is bounded too): a client's
// NBD_OPT_GO beyond that is answered with NBD_REP_ERR_POLICY and "too
// many connections ..."; at most MaxHandshakes connections negotiate at
// once.
package nbd
