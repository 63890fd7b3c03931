// goserver: the Go workload of the tests. It calls, COUNT times (default: forever) every
// INTERVAL_MS milliseconds, functions whose arguments the tests read with uprobes:
//
//	handle(n int, name string, req *request) int    an int, a string, a struct pointer
//	(*server).serve(n int) int                      a method (symbol main.(*server).serve)
//	sum3(a, b, c int64) int64                       assembly: the stack ABI (symbol main.sum3.abi0)
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
		fmt.Printf("call %d\n", i)
		time.Sleep(time.Duration(interval) * time.Millisecond)
	}
}
