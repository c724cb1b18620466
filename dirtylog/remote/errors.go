package remote

import (
	"errors"
	"fmt"
	"os"

	"github.com/dmlog/dmlog/dirtylog"
)

// Sentinel errors. Errors from this package wrap one of these (or a
// dirtylog sentinel), so callers test them with errors.Is.
var (
	// ErrBadFrame: bytes on the stream are not a valid frame (bad magic,
	// nonzero padding, a malformed payload).
	ErrBadFrame = errors.New("remote: malformed frame")
	// ErrFrameTooLarge: a frame announces a payload over MaxPayload.
	ErrFrameTooLarge = errors.New("remote: frame payload too large")
	// ErrVersion: the peer speaks another protocol version.
	ErrVersion = errors.New("remote: protocol version mismatch")
	// ErrUnknownRequest: a request type the protocol does not define.
	ErrUnknownRequest = errors.New("remote: unknown request type")
	// ErrUUIDTooLong: a log UUID longer than MaxUUIDLen bytes.
	ErrUUIDTooLong = errors.New("remote: log UUID too long")
	// ErrUnreachable: the log server cannot be reached; the client keeps
	// redialling in the background.
	ErrUnreachable = errors.New("remote: log server unreachable")
	// ErrNoLog: the server does not host the log for this node (no CTR on
	// this connection); the client answers it by replaying CTR and RESUME.
	ErrNoLog = errors.New("remote: log not constructed on this connection")
	// ErrInsecure: TCP without mutual TLS was asked for.
	ErrInsecure = errors.New("remote: TCP requires mutual TLS")
	// ErrServerClosed: Serve was called on, or returned because of, a
	// closed Server.
	ErrServerClosed = errors.New("remote: server closed")
)

// errAlreadyClosed is a second Server.Close: ErrServerClosed, and
// os.ErrClosed as for a second Close of an *os.File.
var errAlreadyClosed error = alreadyClosed{}

type alreadyClosed struct{}

func (alreadyClosed) Error() string   { return "remote: server already closed" }
func (alreadyClosed) Unwrap() []error { return []error{ErrServerClosed, os.ErrClosed} }

// Linux errno values carried in a reply's error field (negated).
const (
	errnoNOENT          = 2
	errnoSRCH           = 3
	errnoIO             = 5
	errnoAGAIN          = 11
	errnoINVAL          = 22
	errnoRANGE          = 34
	errnoPROTO          = 71
	errnoMSGSIZE        = 90
	errnoPROTONOSUPPORT = 93
	errnoSHUTDOWN       = 108
)

// RemoteError is an error the server returned for a request: the
// kernel's negative errno plus the server's message.
type RemoteError struct {
	Type    RequestType
	Errno   int32 // positive errno
	Message string
}

// Error formats the request, message and errno.
func (e *RemoteError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("remote: %v: %s (errno %d)", e.Type, e.Message, e.Errno)
	}
	return fmt.Sprintf("remote: %v: errno %d", e.Type, e.Errno)
}

// Unwrap maps the errno to the sentinel it stands for.
func (e *RemoteError) Unwrap() error {
	switch e.Errno {
	case errnoIO:
		return dirtylog.ErrLogFailed
	case errnoRANGE:
		return dirtylog.ErrRegionRange
	case errnoINVAL:
		return dirtylog.ErrBadArgs
	case errnoPROTONOSUPPORT:
		return ErrVersion
	case errnoSRCH, errnoNOENT:
		return ErrNoLog
	case errnoMSGSIZE:
		return ErrFrameTooLarge
	case errnoPROTO:
		return ErrBadFrame
	case errnoSHUTDOWN:
		return ErrServerClosed
	}
	return nil
}

// errnoOf maps a server-side error to the errno sent back.
func errnoOf(err error) int32 {
	switch {
	case errors.Is(err, dirtylog.ErrRegionRange):
		return errnoRANGE
	case errors.Is(err, dirtylog.ErrLogFailed):
		return errnoIO
	case errors.Is(err, ErrVersion):
		return errnoPROTONOSUPPORT
	case errors.Is(err, ErrNoLog):
		return errnoSRCH
	case errors.Is(err, ErrFrameTooLarge):
		return errnoMSGSIZE
	case errors.Is(err, ErrServerClosed), errors.Is(err, dirtylog.ErrClosed):
		return errnoSHUTDOWN
	case errors.Is(err, ErrBadFrame):
		return errnoPROTO
	}
	return errnoINVAL
}
