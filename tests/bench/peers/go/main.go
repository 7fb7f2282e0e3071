// Go reference peer for the flock actor-runtime micro-benchmarks (spawn,
// ring, fan-out, skynet). Built and run by tests/bench/peers/run.sh so that
// `make bench` can compare the C runtime against goroutines + channels.
// Standard library only; prints `figure go_<name> <value> <unit>` lines.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	spawnCount   = 1000000
	ringSize     = 1000
	ringHops     = 10000000
	fanoutCount  = 100000
	skynetLeaves = 1000000
	skynetDiv    = 10
	skynetSum    = 499999500000
)

func figure(name string, value string, unit string) {
	fmt.Printf("figure go_%s %s %s\n", name, value, unit)
}

func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}

func perSecond(n int, d time.Duration) string {
	return strconv.FormatFloat(float64(n)/d.Seconds(), 'f', 0, 64)
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "go peer: "+format+"\n", args...)
	os.Exit(1)
}

// rssBytes returns VmRSS of this process from /proc/self/status.
func rssBytes() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		fail("cannot read /proc/self/status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "VmRSS:") {
			fields := strings.Fields(line)
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				fail("bad VmRSS line %q", line)
			}
			return kb * 1024
		}
	}
	fail("no VmRSS in /proc/self/status")
	return 0
}

// spawn: 1,000,000 goroutines, each with its own channel (its mailbox),
// each parked on a receive. Time = until every goroutine has started and is
// about to block; memory = VmRSS delta / count.
func benchSpawn() {
	runtime.GC()
	chans := make([]chan int, spawnCount)
	var started int64
	ready := make(chan struct{})
	var exited sync.WaitGroup
	exited.Add(spawnCount)

	before := rssBytes()
	t0 := time.Now()
	for i := range chans {
		ch := make(chan int)
		chans[i] = ch
		go func() {
			if atomic.AddInt64(&started, 1) == spawnCount {
				close(ready)
			}
			<-ch
			exited.Done()
		}()
	}
	<-ready
	elapsed := time.Since(t0)
	after := rssBytes()

	figure("spawn_seconds", seconds(elapsed), "s")
	figure("spawn_bytes_per_process", strconv.FormatInt((after-before)/spawnCount, 10), "B")

	for _, ch := range chans {
		close(ch)
	}
	exited.Wait()
}

// ring: ringSize goroutines joined by unbuffered channels; one token carries
// the remaining hop count and is decremented on every forward.
func benchRing() {
	runtime.GC()
	chans := make([]chan int, ringSize)
	for i := range chans {
		chans[i] = make(chan int)
	}
	done := make(chan struct{})
	var exited sync.WaitGroup
	exited.Add(ringSize)
	for i := 0; i < ringSize; i++ {
		in, out := chans[i], chans[(i+1)%ringSize]
		go func() {
			defer exited.Done()
			for n := range in {
				if n == 0 {
					done <- struct{}{}
					continue
				}
				out <- n - 1
			}
		}()
	}

	t0 := time.Now()
	chans[0] <- ringHops
	<-done
	elapsed := time.Since(t0)
	figure("ring_hops_per_second", perSecond(ringHops, elapsed), "hops/s")

	for _, ch := range chans {
		close(ch)
	}
	exited.Wait()
}

// fan-out: one sender goroutine sends an int to each of fanoutCount
// receivers (one 1-buffered channel each); every receiver appends it to its
// own slice and decrements a WaitGroup. Spawning is outside the timing.
func benchFanout() {
	runtime.GC()
	chans := make([]chan int, fanoutCount)
	var started int64
	ready := make(chan struct{})
	var delivered sync.WaitGroup
	var exited sync.WaitGroup
	var kept int64
	exited.Add(fanoutCount)
	for i := range chans {
		ch := make(chan int, 1)
		chans[i] = ch
		go func() {
			defer exited.Done()
			var state []int
			if atomic.AddInt64(&started, 1) == fanoutCount {
				close(ready)
			}
			for x := range ch {
				state = append(state, x)
				delivered.Done()
			}
			atomic.AddInt64(&kept, int64(len(state)))
		}()
	}
	<-ready

	start := make(chan int)
	go func() {
		for v := range start {
			for _, ch := range chans {
				ch <- v
			}
		}
	}()

	round := func(v int) time.Duration {
		delivered.Add(fanoutCount)
		t0 := time.Now()
		start <- v
		delivered.Wait()
		return time.Since(t0)
	}
	first := round(1)
	warm := round(2)
	figure("fanout_first_msgs_per_second", perSecond(fanoutCount, first), "msgs/s")
	figure("fanout_warm_msgs_per_second", perSecond(fanoutCount, warm), "msgs/s")

	close(start)
	for _, ch := range chans {
		close(ch)
	}
	exited.Wait()
	if kept != 2*fanoutCount {
		fail("fan-out receivers kept %d messages, want %d", kept, 2*fanoutCount)
	}
}

// skynet: the classic tree of goroutines, fan-out 10, 1,000,000 leaves.
func skynet(c chan<- int, num, size, div int) {
	if size == 1 {
		c <- num
		return
	}
	rc := make(chan int, div)
	sub := size / div
	for i := 0; i < div; i++ {
		go skynet(rc, num+i*sub, sub, div)
	}
	sum := 0
	for i := 0; i < div; i++ {
		sum += <-rc
	}
	c <- sum
}

func benchSkynet() {
	runtime.GC()
	c := make(chan int, 1)
	t0 := time.Now()
	go skynet(c, 0, skynetLeaves, skynetDiv)
	sum := <-c
	elapsed := time.Since(t0)
	if sum != skynetSum {
		fail("skynet sum %d, want %d", sum, skynetSum)
	}
	figure("skynet_seconds", seconds(elapsed), "s")
}

func main() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(2)
	}
	benchSpawn()
	benchRing()
	benchFanout()
	benchSkynet()
}
