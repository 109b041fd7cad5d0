// heapref writes a heap profile the way a Go service does (runtime/pprof's
// WriteHeapProfile), as the reference scripts/fleet.sh compares memsentry's profile
// headers with: the file named by the first argument.
package main

import (
	"os"
	"runtime/pprof"
)

var kept [][]byte

func main() {
	for i := 0; i < 1000; i++ {
		kept = append(kept, make([]byte, 4096))
	}
	out, err := os.Create(os.Args[1])
	if err != nil {
		panic(err)
	}
	defer out.Close()
	if err := pprof.WriteHeapProfile(out); err != nil {
		panic(err)
	}
}
