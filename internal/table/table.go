// Package table holds small helpers shared by the parsers of device-mapper
// table lines.
package table

import (
	"strconv"
	"strings"
)

// Fields splits a table line into words at runs of spaces and tabs, as
// dm_split_args does (without its backslash escapes).
func Fields(line string) []string {
	return strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == '\n' })
}

// ParseUint parses s the way the kernel's sscanf("%u%c") check does:
// optional leading white space and '+', then decimal digits to the very
// end of the string, fitting in bits. ok is false otherwise.
func ParseUint(s string, bits int) (v uint64, ok bool) {
	s = strings.TrimLeft(s, " \t\n")
	s = strings.TrimPrefix(s, "+")
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, bits)
	return v, err == nil
}
