package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// UsageError is a bad flag, value or argument: the command exits 2.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the error UsageError wraps.
func (e UsageError) Unwrap() error { return e.Err }

// Usagef formats a UsageError.
func Usagef(format string, args ...any) error { return UsageError{fmt.Errorf(format, args...)} }

// ExitCode is the exit status for err, the error a command's run
// returned, after printing it to stderr as one line naming the command:
// 0 for nil or flag.ErrHelp (the usage was printed), 2 for a UsageError,
// 1 for anything else.
func ExitCode(stderr io.Writer, name string, err error) int {
	var ue UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %v (-h for help)\n", name, err)
		return 2
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	return 1
}

// Exit exits the process with ExitCode(os.Stderr, name, err) unless that
// is 0, when it returns.
func Exit(name string, err error) {
	if code := ExitCode(os.Stderr, name, err); code != 0 {
		os.Exit(code)
	}
}

// ExitIfUsage ends the process for the result of a command's parsing of
// its arguments: exit 0 after -h (the usage was printed), exit 2 with one
// line naming the command for any other error; it returns for nil.
func ExitIfUsage(name string, err error) {
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		err = UsageError{err}
	}
	Exit(name, err)
	if err != nil {
		os.Exit(0) // -h
	}
}

// SignalContext returns a context cancelled by the first SIGINT or
// SIGTERM, which starts the command's clean shutdown; a second signal,
// should that shutdown hang (a device that never answers), kills the
// process as usual. stop releases the signals.
func SignalContext() (ctx context.Context, stop context.CancelFunc) {
	ctx, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() { <-ctx.Done(); stop() }()
	return ctx, stop
}
