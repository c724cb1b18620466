// Package readme holds no code: its test keeps the repository's README.md
// honest. It builds and runs every Go program in the README, and checks
// that the README's list of fuzz commands names every fuzz target.
//
//	go test ./examples/readme
package readme
