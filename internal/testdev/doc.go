// Package testdev provides block devices for tests: an in-memory device
// whose writes stay volatile until Sync and which can simulate a power cut
// (Memory), and a wrapper that injects I/O errors by operation, offset range
// and count (Faulty).
//
// Both are safe for concurrent use by multiple goroutines.
package testdev
