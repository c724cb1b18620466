package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/dmlog/dmlog/dirtylog/testdev"
	"github.com/dmlog/dmlog/logwrites"
	"github.com/stretchr/testify/require"
)

func TestStoreRoundTrip(t *testing.T) {
	dev := testdev.NewMemory(devSize)
	s := Create(dev)
	var puts []Record
	for i := range 5 {
		r := Record{Key: strings.Repeat("k", i+1), Value: strings.Repeat("v", 300*i)}
		require.NoError(t, s.Put(r))
		puts = append(puts, r)
	}
	got, n, err := Recover(dev)
	require.NoError(t, err)
	require.Equal(t, uint64(5), n)
	require.Equal(t, puts, got)

	// Everything was synced: a power cut loses nothing.
	dev.Crash(testdev.CrashOptions{Mode: testdev.DropAll})
	got, _, err = Recover(dev)
	require.NoError(t, err)
	require.Equal(t, puts, got)

	// Damage a committed record: recovery reports corruption.
	_, err = dev.WriteAt([]byte{0xff}, 512+10)
	require.NoError(t, err)
	_, n, err = Recover(dev)
	require.ErrorIs(t, err, ErrCorrupt)
	require.Equal(t, uint64(5), n)

	// An empty device is an empty store; garbage is not.
	got, n, err = Recover(testdev.NewMemory(devSize))
	require.NoError(t, err)
	require.Zero(t, n)
	require.Empty(t, got)
	_, _, err = Recover(testdev.NewMemoryFrom(bytes.Repeat([]byte{1}, devSize)))
	require.ErrorIs(t, err, ErrCorrupt)
}

func TestCrashtestCorrectStorePasses(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(config{puts: 12, tear: true, seed: 1, maxSubset: 64}, &out))
	require.Contains(t, out.String(), "every state recovers every acknowledged record")
}

func TestCrashtestBugIsFound(t *testing.T) {
	for seed := range uint64(3) {
		var out bytes.Buffer
		err := run(config{puts: 12, bug: true, tear: true, seed: seed, maxSubset: 64, parallel: 2}, &out)
		require.Error(t, err)
		require.Contains(t, err.Error(), "committed data lost")
		require.Contains(t, out.String(), "committed record lost")
		require.Contains(t, out.String(), "the check fails again: committed record lost")
		// The state shown loses data a caller was told is safe.
		require.Regexp(t, `LOST DATA in crash state after \d+ states checked \([1-9]\d* records acknowledged before the cut\)`, out.String())
	}
}

// A failing state before any acknowledgement is kept aside, lowest ID
// first, with its description copied (Explore may reuse the slices).
func TestEarlyFailureKeepsLowestID(t *testing.T) {
	var e earlyFailure
	apply := []uint64{4, 5}
	e.note(logwrites.Description{ID: 9, Apply: apply}, "", errors.New("nine"))
	e.note(logwrites.Description{ID: 3, Apply: apply}, "", errors.New("three"))
	e.note(logwrites.Description{ID: 7}, "", errors.New("seven"))
	apply[0] = 99
	require.True(t, e.found)
	require.Equal(t, 3, e.desc.ID)
	require.EqualError(t, e.err, "three")
	require.Equal(t, []uint64{4, 5}, e.desc.Apply)
}

// Without subset states (prefixes only, as replay-log --check flush would
// do) the missing fsync goes unnoticed: the reordering is what finds it.
func TestCrashtestPrefixesAloneMissTheBug(t *testing.T) {
	require.NoError(t, run(config{puts: 12, bug: true, maxSubset: -1}, &bytes.Buffer{}))
}

// The checker reports, never panics on, an image holding more records than
// were put (a store bug that writes records of its own).
func TestCheckImageMoreRecordsThanPut(t *testing.T) {
	dev := testdev.NewMemory(devSize)
	s := Create(dev)
	puts := []Record{{Key: "a", Value: "1"}, {Key: "b", Value: "2"}}
	for _, r := range puts {
		require.NoError(t, s.Put(r))
	}
	require.NoError(t, checkImage(dev, logwrites.EndMark, puts))
	require.ErrorContains(t, checkImage(dev, logwrites.EndMark, puts[:1]), "2 records recovered, only 1 were put")
}

func TestParseArgs(t *testing.T) {
	c, err := parseArgs([]string{"-puts", "7", "-bug", "-max-subset", "-1"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, config{puts: 7, bug: true, tear: true, seed: 1, maxSubset: -1}, c)
	var usage bytes.Buffer
	_, err = parseArgs([]string{"-h"}, &usage)
	require.ErrorIs(t, err, flag.ErrHelp)
	require.Contains(t, usage.String(), "-puts")
	for args, want := range map[string]string{
		"-puts 0":       "-puts 0: want 1 to 500 records",
		"-puts -3":      "-puts -3: want 1 to 500 records",
		"-puts 501":     "-puts 501: want 1 to 500 records",
		"-parallel -1":  "-parallel -1: want 0",
		"-seed x":       `invalid value "x" for flag -seed`,
		"-nosuch":       "flag provided but not defined: -nosuch",
		"-bug leftover": `unexpected argument "leftover"`,
	} {
		_, err := parseArgs(strings.Fields(args), io.Discard)
		require.ErrorContains(t, err, want, args)
		require.NotContains(t, err.Error(), "\n", args)
	}
}
