package nbd

// Wire constants of the NBD protocol (fixed newstyle negotiation and the
// simple-reply transmission phase). All integers are big-endian on the wire.
const (
	magicNBD       = 0x4e42444d41474943 // "NBDMAGIC"
	magicOpt       = 0x49484156454f5054 // "IHAVEOPT"
	magicOptReply  = 0x0003e889045565a9
	magicRequest   = 0x25609513
	magicSimpleRep = 0x67446698

	// Handshake flags (server) and client flags.
	flagFixedNewstyle = 1 << 0
	flagNoZeroes      = 1 << 1
	clientFlagsKnown  = flagFixedNewstyle | flagNoZeroes

	// Options.
	optExportName = 1
	optAbort      = 2
	optList       = 3
	optStartTLS   = 5
	optInfo       = 6
	optGo         = 7

	// Option reply types.
	repAck            = 1
	repServer         = 2
	repInfo           = 3
	repFlagError      = 1 << 31
	repErrUnsup       = repFlagError | 1
	repErrPolicy      = repFlagError | 2
	repErrInvalid     = repFlagError | 3
	repErrTLSReqd     = repFlagError | 5
	repErrUnknown     = repFlagError | 6
	repErrShutdown    = repFlagError | 7
	repErrBlockSizeRq = repFlagError | 8

	// Information types of NBD_OPT_INFO / NBD_OPT_GO.
	infoExport      = 0
	infoName        = 1
	infoDescription = 2
	infoBlockSize   = 3

	// Transmission flags.
	tflagHasFlags        = 1 << 0
	tflagReadOnly        = 1 << 1
	tflagSendFlush       = 1 << 2
	tflagSendFUA         = 1 << 3
	tflagSendTrim        = 1 << 5
	tflagSendWriteZeroes = 1 << 6
	tflagCanMultiConn    = 1 << 8

	// Commands.
	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdWriteZeroes = 6

	// Command flags.
	cmdFlagFUA    = 1 << 0
	cmdFlagNoHole = 1 << 1

	// Errors of simple replies (errno values).
	errPerm     = 1
	errIO       = 5
	errInval    = 22
	errNoSpc    = 28
	errShutdown = 108

	requestSize     = 28
	optHeaderSize   = 16
	maxOptionLength = 64 << 10 // option data beyond this closes the connection
	maxNameLength   = 4096     // the spec's limit for strings
)
