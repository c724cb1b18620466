package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// This file is a deliberately small append-only key-value store, written
// for the example: a commit block in sector 0 and records appended from
// sector 1 on.
//
//	sector 0:  "KVLOG001" | count u64 | end u64 | crc32c of bytes 0..23 (u32)
//	record:    klen u16 | vlen u32 | key | value | crc32c of the above (u32),
//	           zero-padded to whole sectors
//
// Put appends the record, syncs, then rewrites the commit block with the
// new count and end, and syncs again: once Put returns the record survives
// any power cut. Recovery trusts the commit block: it reads exactly count
// records and checks each one's checksum.

const (
	sector    = 512
	kvMagic   = "KVLOG001"
	firstData = sector
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Device is what the store runs on: a block device with a cache flush.
type Device interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}

// Store is the key-value store. It is not safe for concurrent use.
type Store struct {
	dev   Device
	count uint64
	end   int64
	// SkipDataSync is the deliberate bug: Put writes the commit block
	// without first syncing the record, so the device may persist the
	// commit block before (or without) the record.
	SkipDataSync bool
}

// Record is one key-value pair.
type Record struct {
	Key, Value string
}

// ErrCorrupt means the store's on-disk state is not one it could have
// written: a bad commit block, or a committed record that is missing or
// damaged.
var ErrCorrupt = errors.New("kv: corrupt store")

// Create returns an empty store on an all-zero device.
func Create(dev Device) *Store { return &Store{dev: dev, end: firstData} }

func encodeRecord(r Record) []byte {
	n := 2 + 4 + len(r.Key) + len(r.Value) + 4
	b := make([]byte, (n+sector-1)/sector*sector)
	binary.LittleEndian.PutUint16(b[0:], uint16(len(r.Key)))
	binary.LittleEndian.PutUint32(b[2:], uint32(len(r.Value)))
	copy(b[6:], r.Key)
	copy(b[6+len(r.Key):], r.Value)
	binary.LittleEndian.PutUint32(b[n-4:], crc32.Checksum(b[:n-4], castagnoli))
	return b
}

func (s *Store) commitBlock() []byte {
	b := make([]byte, sector)
	copy(b, kvMagic)
	binary.LittleEndian.PutUint64(b[8:], s.count)
	binary.LittleEndian.PutUint64(b[16:], uint64(s.end))
	binary.LittleEndian.PutUint32(b[24:], crc32.Checksum(b[:24], castagnoli))
	return b
}

// Put appends a record and commits it. When Put returns nil the record is
// durable (unless SkipDataSync is set).
func (s *Store) Put(r Record) error {
	rec := encodeRecord(r)
	if _, err := s.dev.WriteAt(rec, s.end); err != nil {
		return err
	}
	if !s.SkipDataSync {
		if err := s.dev.Sync(); err != nil {
			return err
		}
	}
	s.count++
	s.end += int64(len(rec))
	if _, err := s.dev.WriteAt(s.commitBlock(), 0); err != nil {
		return err
	}
	return s.dev.Sync()
}

// Recover reads the committed records of a store from dev (an all-zero
// device is an empty store). committed is the count in the commit block;
// when err is nil, len(records) == committed.
func Recover(dev io.ReaderAt) (records []Record, committed uint64, err error) {
	b := make([]byte, sector)
	if _, err := dev.ReadAt(b, 0); err != nil {
		return nil, 0, err
	}
	if string(b[:8]) != kvMagic {
		for _, c := range b {
			if c != 0 {
				return nil, 0, fmt.Errorf("%w: bad magic in the commit block", ErrCorrupt)
			}
		}
		return nil, 0, nil // never committed
	}
	if crc32.Checksum(b[:24], castagnoli) != binary.LittleEndian.Uint32(b[24:]) {
		return nil, 0, fmt.Errorf("%w: commit block checksum", ErrCorrupt)
	}
	committed = binary.LittleEndian.Uint64(b[8:])
	end := int64(binary.LittleEndian.Uint64(b[16:]))
	off := int64(firstData)
	for i := uint64(0); i < committed; i++ {
		r, n, err := readRecord(dev, off, end)
		if err != nil {
			return records, committed, fmt.Errorf("%w: committed record %d of %d at byte %d: %v", ErrCorrupt, i+1, committed, off, err)
		}
		records = append(records, r)
		off += n
	}
	if off != end {
		return records, committed, fmt.Errorf("%w: records end at %d, commit block says %d", ErrCorrupt, off, end)
	}
	return records, committed, nil
}

func readRecord(dev io.ReaderAt, off, end int64) (Record, int64, error) {
	var h [6]byte
	if off+6 > end {
		return Record{}, 0, errors.New("beyond the committed end")
	}
	if _, err := dev.ReadAt(h[:], off); err != nil {
		return Record{}, 0, err
	}
	kl, vl := int64(binary.LittleEndian.Uint16(h[0:])), int64(binary.LittleEndian.Uint32(h[2:]))
	n := 6 + kl + vl + 4
	if off+n > end {
		return Record{}, 0, errors.New("length beyond the committed end")
	}
	b := make([]byte, n)
	if _, err := dev.ReadAt(b, off); err != nil {
		return Record{}, 0, err
	}
	if crc32.Checksum(b[:n-4], castagnoli) != binary.LittleEndian.Uint32(b[n-4:]) {
		return Record{}, 0, errors.New("checksum mismatch")
	}
	padded := (n + sector - 1) / sector * sector
	return Record{Key: string(b[6 : 6+kl]), Value: string(b[6+kl : n-4])}, padded, nil
}
