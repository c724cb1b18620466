// Package cli holds what the example commands share about their command
// lines: usage on -h, one line for a bad flag.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// Parse parses args with fs, whose errors and usage go nowhere but where
// this says. The usage, printed to stdout on -h or -help, is header
// followed by the flags' defaults (none if fs has no flags) and footer.
// Parse returns flag.ErrHelp after printing the usage, and a bad flag's
// error otherwise, for the caller to print as its one line (exit 2).
func Parse(fs *flag.FlagSet, args []string, stdout io.Writer, header, footer string) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {} // flag calls it for bad flags too: printed below for -h only
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, header)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		fmt.Fprint(stdout, footer)
	}
	return err
}
