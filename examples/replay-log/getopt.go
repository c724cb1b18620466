package main

import (
	"fmt"
	"strings"
)

// longOpt is one long option, as in a getopt_long table.
type longOpt struct {
	name   string
	hasArg bool
	val    rune // 0 for options told apart by name, as replay-log's table does
}

// parsedOpt is one option found on the command line.
type parsedOpt struct {
	name string // long name, or the short letter
	arg  string
}

// getoptLong parses args the way glibc's getopt_long does for replay-log:
// long options may be abbreviated to any prefix; a prefix matching several
// options is ambiguous only if their signatures (argument, value) differ,
// otherwise the first in table order wins; "--name=value" and
// "--name value" both work; short options may be clustered; non-options
// are collected; "--" ends option parsing. Errors carry glibc's wording.
func getoptLong(args []string, short string, table []longOpt) (opts []parsedOpt, rest []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return opts, append(rest, args[i+1:]...), nil
		case strings.HasPrefix(a, "--"):
			body := a[2:]
			name, val, hasVal := strings.Cut(body, "=")
			o, err := matchLong(name, table)
			if err != nil {
				return nil, nil, err
			}
			switch {
			case o.hasArg && hasVal:
				opts = append(opts, parsedOpt{o.name, val})
			case o.hasArg:
				if i+1 >= len(args) {
					return nil, nil, fmt.Errorf("option '--%s' requires an argument", o.name)
				}
				i++
				opts = append(opts, parsedOpt{o.name, args[i]})
			case hasVal:
				return nil, nil, fmt.Errorf("option '--%s' doesn't allow an argument", o.name)
			default:
				opts = append(opts, parsedOpt{o.name, ""})
			}
		case strings.HasPrefix(a, "-") && a != "-":
			for _, c := range a[1:] {
				if !strings.ContainsRune(short, c) {
					return nil, nil, fmt.Errorf("invalid option -- '%c'", c)
				}
				opts = append(opts, parsedOpt{string(c), ""})
			}
		default:
			rest = append(rest, a)
		}
	}
	return opts, rest, nil
}

func matchLong(name string, table []longOpt) (longOpt, error) {
	var matches []longOpt
	for _, o := range table {
		if o.name == name {
			return o, nil
		}
		if strings.HasPrefix(o.name, name) {
			matches = append(matches, o)
		}
	}
	if len(matches) == 0 || name == "" {
		return longOpt{}, fmt.Errorf("unrecognized option '--%s'", name)
	}
	first := matches[0]
	for _, o := range matches[1:] {
		if o.hasArg != first.hasArg || o.val != first.val {
			var names []string
			for _, m := range matches {
				names = append(names, "'--"+m.name+"'")
			}
			return longOpt{}, fmt.Errorf("option '--%s' is ambiguous; possibilities: %s", name, strings.Join(names, " "))
		}
	}
	return first, nil
}
