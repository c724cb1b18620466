package nbd

import "errors"

// Sentinel errors. Errors returned by the parsers and by a connection wrap
// one of them, so callers can test with errors.Is.
var (
	// ErrBadMagic is wrapped when a client's option or request does not
	// start with the protocol's magic number.
	ErrBadMagic = errors.New("nbd: bad magic")
	// ErrClientFlags is wrapped when a client's handshake flags are not
	// fixed newstyle or carry bits this server does not know.
	ErrClientFlags = errors.New("nbd: unsupported client flags")
	// ErrMalformed is wrapped when an option's or request's fields are
	// inconsistent (lengths that do not add up, a name too long).
	ErrMalformed = errors.New("nbd: malformed message")
	// ErrOptionTooLong is wrapped when a client announces option data longer
	// than the server accepts (64 KiB).
	ErrOptionTooLong = errors.New("nbd: option data too long")
	// ErrUnknownExport is wrapped when NBD_OPT_EXPORT_NAME names an export
	// the server does not have (the protocol can only answer by closing).
	ErrUnknownExport = errors.New("nbd: unknown export")
	// ErrAborted is wrapped when the client ends the negotiation with
	// NBD_OPT_ABORT.
	ErrAborted = errors.New("nbd: client aborted the negotiation")
	// ErrServerClosed is returned by Serve after Close.
	ErrServerClosed = errors.New("nbd: server closed")
	// ErrBadExport is wrapped by NewServer for an unusable Export.
	ErrBadExport = errors.New("nbd: bad export")
	// ErrTLSRequired is wrapped when a client tries to reach an export
	// without STARTTLS on a server that requires TLS.
	ErrTLSRequired = errors.New("nbd: TLS required")
	// ErrTooManyConnections is wrapped when a client asks for an export
	// with NBD_OPT_EXPORT_NAME while Options.MaxConns connections are
	// served (the protocol can only answer by closing).
	ErrTooManyConnections = errors.New("nbd: too many connections")
)
