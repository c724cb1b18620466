package main

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
)

// controlServer answers the -control socket: one command per line, one
// reply line per command.
//
//	mark NAME   place a mark in the Recorder's log (-record only) -> "ok"
//	status      the backend's status line                         -> "ok STATUS"
//
// Anything else, or a failing command, gets "error: REASON".
type controlServer struct {
	l  net.Listener
	b  *served
	mu sync.Mutex
	cs map[net.Conn]struct{}
	wg sync.WaitGroup
}

func newControlServer(l net.Listener, b *served) *controlServer {
	c := &controlServer{l: l, b: b, cs: map[net.Conn]struct{}{}}
	c.wg.Add(1)
	go c.accept()
	return c
}

func (c *controlServer) accept() {
	defer c.wg.Done()
	for {
		nc, err := c.l.Accept()
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.cs == nil {
			c.mu.Unlock()
			nc.Close()
			return
		}
		c.cs[nc] = struct{}{}
		c.wg.Add(1)
		c.mu.Unlock()
		go c.serve(nc)
	}
}

func (c *controlServer) serve(nc net.Conn) {
	defer c.wg.Done()
	defer func() {
		c.mu.Lock()
		delete(c.cs, nc)
		c.mu.Unlock()
		nc.Close()
	}()
	sc := bufio.NewScanner(nc)
	sc.Buffer(make([]byte, 4096), 4096)
	for sc.Scan() {
		if _, err := fmt.Fprintln(nc, c.do(sc.Text())); err != nil {
			return
		}
	}
	if sc.Err() != nil {
		fmt.Fprintln(nc, "error: line too long (4096 bytes at most)")
	}
}

func (c *controlServer) do(line string) string {
	cmd, arg, _ := strings.Cut(strings.TrimRight(line, "\r"), " ")
	switch cmd {
	case "mark":
		if c.b.mark == nil {
			return "error: marks need -record (this server has no log-writes recorder)"
		}
		if arg == "" {
			return "error: usage: mark NAME"
		}
		if err := c.b.mark(arg); err != nil {
			return "error: " + err.Error()
		}
		return "ok"
	case "status":
		return "ok " + c.b.status()
	}
	return fmt.Sprintf("error: unknown command %q (want: mark NAME, status)", cmd)
}

// close stops accepting, closes every control connection and waits.
func (c *controlServer) close() error {
	err := c.l.Close()
	c.mu.Lock()
	for nc := range c.cs {
		nc.Close()
	}
	c.cs = nil
	c.mu.Unlock()
	c.wg.Wait()
	return err
}
