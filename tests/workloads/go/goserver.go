// goserver: the Go workload of the tests. It calls, COUNT times (default: forever) every
// INTERVAL_MS milliseconds, functions whose arguments the tests read with uprobes:
//
//	handle(n int, name string, req *request) int    an int, a string, a struct pointer
//	(*server).serve(n int) int                      a method (symbol main.(*server).serve)
//	sum3(a, b, c int64) int64                       assembly: the stack ABI (symbol main.sum3.abi0)
//	grow(depth int) int                             recursion on a new goroutine: its stack is moved
//
// and prints "call N" each time. Built with `go build` (CGO off: a static binary).
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

type request struct {
	ID     int64
	Weight int64
}

type server struct{ calls int }

//go:noinline
func handle(n int, name string, req *request) int {
	return n + len(name) + int(req.ID)
}

//go:noinline
func (s *server) serve(n int) int {
	s.calls++
	return s.calls * n
}

// grow recurses with a 1 KiB frame, so a new goroutine's stack (a few KiB) is copied to a larger
// one while it runs: a return address planted in its frames (a uretprobe's) breaks that.
//
//go:noinline
func grow(depth int) int {
	var pad [1024]byte
	pad[depth%len(pad)] = byte(depth)
	if depth == 0 {
		return int(pad[0])
	}
	return grow(depth-1) + int(pad[depth%len(pad)]&1)
}

// sum3 is in sum_amd64.s.
func sum3(a, b, c int64) int64

func main() {
	count, interval := 0, 100
	if len(os.Args) > 1 {
		count, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		interval, _ = strconv.Atoi(os.Args[2])
	}
	s := &server{}
	for i := 1; count == 0 || i <= count; i++ {
		req := &request{ID: int64(1000 + i), Weight: int64(7 * i)}
		handle(i, "caller-"+strconv.Itoa(i), req)
		s.serve(i)
		sum3(int64(i), int64(10*i), int64(100*i))
		grown := make(chan int)
		go func() { grown <- grow(64) }()
		<-grown
		fmt.Printf("call %d\n", i)
		time.Sleep(time.Duration(interval) * time.Millisecond)
	}
}
