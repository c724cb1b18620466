module github.com/dmlog/dmlog

go 1.26.0

require (
	github.com/bits-and-blooms/bitset v1.29.0
	github.com/stretchr/testify v1.12.1
	golang.org/x/sync v0.24.0
)

require go.yaml.in/yaml/v3 v3.0.5 // indirect
