//go:build race

package main

// raceEnabled: the race detector is on (it slows the server about 6x, so
// TestCopyBitExact copies a smaller image).
const raceEnabled = true
