// Package testdev provides block devices for tests: an in-memory device
// whose writes stay volatile until Sync and which can simulate a power cut
// (Memory), a power switch that cuts a set of them at one instant (Power),
// and a wrapper that injects I/O errors by operation, offset range and
// count (Faulty).
//
// The package is public so that programs built on dmlog can crash-test
// their own use of a Mirror, a Log or a Recorder with the same devices
// dmlog's own crash and fault matrices use.
//
// All are safe for concurrent use by multiple goroutines.
package testdev
