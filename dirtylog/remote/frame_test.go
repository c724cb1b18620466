package remote

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func mustFrame(t testing.TB, h Header, p []byte) []byte {
	b, err := AppendFrame(nil, h, p)
	require.NoError(t, err)
	return b
}

func TestFrameRoundTrip(t *testing.T) {
	h := Header{Version: Version, Seq: 7, Type: RequestMarkRegion, Error: -5, LUID: 0xdeadbeef, UUID: "LVM-abc"}
	p := binary.LittleEndian.AppendUint64(nil, 42)
	b := mustFrame(t, h, p)
	require.Len(t, b, HeaderSize+8)
	require.Equal(t, []byte("DMUL"), b[:4])
	require.EqualValues(t, 3, binary.LittleEndian.Uint32(b[4:]))
	require.EqualValues(t, 7, binary.LittleEndian.Uint32(b[8:]))
	require.EqualValues(t, 10, binary.LittleEndian.Uint32(b[12:]))
	require.EqualValues(t, 8, binary.LittleEndian.Uint32(b[20:]))
	require.Equal(t, "LVM-abc", string(b[32:39]))

	fr := NewFrameReader(bytes.NewReader(append(b, b...)))
	for range 2 {
		got, gp, err := fr.ReadFrame()
		require.NoError(t, err)
		h.DataSize = 8
		require.Equal(t, h, got)
		require.Equal(t, p, gp)
	}
	_, _, err := fr.ReadFrame()
	require.ErrorIs(t, err, io.EOF)
}

func TestFrameErrors(t *testing.T) {
	good := Header{Version: Version, Seq: 1, Type: RequestFlush, UUID: "u"}
	mutate := func(f func(b []byte)) []byte {
		b := mustFrame(t, good, []byte{1, 2, 3, 4, 5, 6, 7, 8})
		f(b)
		return b
	}
	for _, tc := range []struct {
		name     string
		b        []byte
		want     error
		inStep   bool // a *HeaderError: the frame was consumed
		atFrameN int
	}{
		{"BadMagic", mutate(func(b []byte) { b[0] = 'X' }), ErrBadFrame, false, 0},
		{"TooLarge", mutate(func(b []byte) { binary.LittleEndian.PutUint32(b[20:], MaxPayload+1) }), ErrFrameTooLarge, false, 0},
		{"Version", mutate(func(b []byte) { binary.LittleEndian.PutUint32(b[4:], 2) }), ErrVersion, true, 0},
		{"UnknownType", mutate(func(b []byte) { binary.LittleEndian.PutUint32(b[12:], 18) }), ErrUnknownRequest, true, 0},
		{"ZeroType", mutate(func(b []byte) { binary.LittleEndian.PutUint32(b[12:], 0) }), ErrUnknownRequest, true, 0},
		{"ReservedBits", mutate(func(b []byte) { binary.LittleEndian.PutUint32(b[12:], 0x100|9) }), ErrUnknownRequest, true, 0},
		{"UUIDTooLong", mutate(func(b []byte) { copy(b[32:], strings.Repeat("x", 129)) }), ErrUUIDTooLong, true, 0},
		{"GarbageAfterUUID", mutate(func(b []byte) { b[40] = 'x' }), ErrBadFrame, true, 0},
		{"Padding", mutate(func(b []byte) { b[165] = 1 }), ErrBadFrame, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := mustFrame(t, Header{Version: Version, Seq: 2, Type: RequestResume, UUID: "u"}, nil)
			fr := NewFrameReader(bytes.NewReader(append(tc.b, next...)))
			_, _, err := fr.ReadFrame()
			require.ErrorIs(t, err, tc.want)
			var he *HeaderError
			require.Equal(t, tc.inStep, errors.As(err, &he))
			if tc.inStep {
				h, _, err := fr.ReadFrame()
				require.NoError(t, err, "the reader must stay in step after a rejected frame")
				require.EqualValues(t, 2, h.Seq)
			}
		})
	}
	t.Run("Truncated", func(t *testing.T) {
		b := mustFrame(t, good, []byte{1, 2, 3, 4, 5, 6, 7, 8})
		for _, n := range []int{1, HeaderSize - 1, HeaderSize, HeaderSize + 7} {
			_, _, err := NewFrameReader(bytes.NewReader(b[:n])).ReadFrame()
			require.ErrorIs(t, err, io.ErrUnexpectedEOF, "cut at %d", n)
		}
	})
	t.Run("AppendFrameChecks", func(t *testing.T) {
		_, err := AppendFrame(nil, Header{UUID: strings.Repeat("x", 129)}, nil)
		require.ErrorIs(t, err, ErrUUIDTooLong)
		_, err = AppendFrame(nil, Header{UUID: "a\x00b"}, nil)
		require.ErrorIs(t, err, ErrBadFrame)
		_, err = AppendFrame(nil, Header{UUID: "u"}, make([]byte, MaxPayload+1))
		require.ErrorIs(t, err, ErrFrameTooLarge)
	})
}

// countingReader counts the bytes the frame reader pulls.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// FuzzFrame feeds arbitrary bytes to the server's frame reader: it must
// never panic, never hold a buffer over HeaderSize+MaxPayload, and every
// frame it accepts must re-encode to the same bytes.
func FuzzFrame(f *testing.F) {
	f.Add(mustFrame(f, Header{Version: Version, Seq: 1, Type: RequestCtr, UUID: "uuid"}, []byte("2048 clustered-core 1024\x00")))
	f.Add(mustFrame(f, Header{Version: Version, Seq: 2, Type: RequestFlush, LUID: 9, UUID: "u"}, make([]byte, 256)))
	two := mustFrame(f, Header{Version: Version, Seq: 3, Type: RequestIsClean, UUID: "u"}, make([]byte, 8))
	f.Add(append(two, two...))
	f.Add([]byte("DMUL"))
	bad := mustFrame(f, Header{Version: Version, Seq: 4, Type: RequestResume, UUID: "u"}, nil)
	binary.LittleEndian.PutUint32(bad[20:], 0xFFFFFFFF)
	f.Add(bad)
	f.Fuzz(func(t *testing.T, data []byte) {
		cr := &countingReader{r: bytes.NewReader(data)}
		fr := NewFrameReader(cr)
		for range 64 {
			h, p, err := fr.ReadFrame()
			if cap(fr.buf) > MaxPayload {
				t.Fatalf("buffer of %d bytes", cap(fr.buf))
			}
			if err != nil {
				var he *HeaderError
				if !errors.As(err, &he) {
					return
				}
				continue
			}
			b, err := AppendFrame(nil, h, p)
			if err != nil {
				t.Fatalf("accepted frame does not re-encode: %v", err)
			}
			if cr.n < len(b) {
				t.Fatalf("frame of %d bytes from %d bytes read", len(b), cr.n)
			}
		}
	})
}
