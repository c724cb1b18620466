// Package e2e holds dmlog's end-to-end tests with a real Linux file
// system: a stock Debian kernel in a qemu TCG guest mounts ext4 on
// /dev/nbd0, which its own NBD client connects, through a virtio-serial
// relay, to dmlog's NBD server (internal/nbd) running in the test. The
// tests cut power under a Mirror whose legs and disk log are crash-capable
// in-memory devices and check that ext4 recovers every durable file with
// both legs identical, and they run the fstests generic/482 check on a
// logwrites.Recorder: e2fsck on the crash state at every FLUSH and FUA.
//
// The tests run only with DMLOG_E2E=1 (see the README section "A real
// file system on dmlog"); they need qemu-system-x86, busybox-static,
// nbd-client and e2fsprogs, and download the kernel package once into
// $DMLOG_CACHE (default ~/.cache/dmlog-e2e).
//
// The guest programs are in guest/workload (the seeded workload) and
// guest/relay (unix socket to virtio-serial port); the guest's /init is
// testdata/scripts/init.
package e2e
