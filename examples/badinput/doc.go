// Package badinput holds no code: its test is the script of bad inputs of
// issue 11 ("Safe on real files"). Each case feeds the library or an example
// command a mistake a new user makes — a wrong region size on reopen, a
// short leg, a data file as the log, live and stale sockets, a regular file
// at the socket path, two openers, an empty log file, a partial last region,
// every example command with -h, a bad flag and SIGTERM — and checks that it
// ends with a clear error (non-nil, one non-empty line; for a command, its
// exit status) or the right result, and that the sha256 of every file that
// was not the library's own is unchanged.
//
//	go test ./examples/badinput
package badinput
