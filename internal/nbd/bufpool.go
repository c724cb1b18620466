package nbd

import (
	"math/bits"
	"sync"
)

// Payload buffers come from pools by power-of-two size class, 4 KiB up.
const minClass = 12

var bufPools [27]sync.Pool

func class(n int) int {
	if n <= 1<<minClass {
		return 0
	}
	return bits.Len(uint(n-1)) - minClass
}

// getBuf returns a buffer of length n (n <= 2^38).
func getBuf(n int) *[]byte {
	c := class(n)
	if b, ok := bufPools[c].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<(c+minClass))
	return &b
}

func putBuf(b *[]byte) {
	if b == nil {
		return
	}
	bufPools[class(cap(*b))].Put(b)
}
