package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// minPinCPUs is the least number of CPUs pinned mode splits: below it,
// disjoint sets would leave Caddy too few cores to mean anything.
const minPinCPUs = 8

// pinPlan is pinned mode's split of the machine (-pin, BENCH_PIN=1):
// disjoint CPU sets for the Caddy under test (and the second, Redis-backed
// Caddy), for the backends (the upstream, forward_auth's endpoint and
// redis-server, in their own process), and for this process, the load
// generator. A quarter each for Caddy and the backends, the rest (half)
// for the load generator: on 16 cores, 0-3, 4-7 and 8-15.
type pinPlan struct {
	caddy, backend, load []int
}

// planPins splits CPUs 0..n-1; false when n is below minPinCPUs.
func planPins(n int) (pinPlan, bool) {
	if n < minPinCPUs {
		return pinPlan{}, false
	}
	q := n / 4
	return pinPlan{caddy: cpuRange(0, q), backend: cpuRange(q, 2*q), load: cpuRange(2*q, n)}, true
}

func cpuRange(from, to int) []int {
	var cpus []int
	for c := from; c < to; c++ {
		cpus = append(cpus, c)
	}
	return cpus
}

// String is the plan as taskset would print it.
func (p pinPlan) String() string {
	return fmt.Sprintf("Caddy on CPUs %s, backends on %s, load generator on %s", cpuList(p.caddy), cpuList(p.backend), cpuList(p.load))
}

// cpuList is "0-3" for a contiguous set (planPins makes only those).
func cpuList(cpus []int) string {
	if len(cpus) == 0 {
		return ""
	}
	return fmt.Sprintf("%d-%d", cpus[0], cpus[len(cpus)-1])
}

// parseCPUList reads cpuList's "a-b".
func parseCPUList(s string) ([]int, error) {
	from, to, ok := strings.Cut(s, "-")
	a, err1 := strconv.Atoi(from)
	b, err2 := strconv.Atoi(to)
	if !ok || err1 != nil || err2 != nil || a < 0 || b < a {
		return nil, fmt.Errorf("bad CPU list %q (want a-b)", s)
	}
	return cpuRange(a, b+1), nil
}

// pinnedEnv marks a bench process that already runs on the load CPUs.
const pinnedEnv = "GATEHOUSE_BENCH_PINNED"

// execPinnedArg is the first argument of the launcher form of this
// program: "bench exec-pinned <a-b> <program> <args…>" runs program on
// those CPUs (see execPinned).
const execPinnedArg = "exec-pinned"

// execPinned sets this thread's CPU affinity to cpus and replaces the
// process with argv[0] (found in PATH when it has no slash): a process
// inherits the affinity of the thread that execs, and all its threads
// start from that one, so the whole program runs on cpus. It returns
// only on failure.
func execPinned(cpus []int, argv []string) error {
	runtime.LockOSThread()
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("setting the CPU affinity: %v", err)
	}
	path := argv[0]
	if !strings.Contains(path, "/") {
		var err error
		if path, err = exec.LookPath(path); err != nil {
			return err
		}
	}
	return syscall.Exec(path, argv, os.Environ())
}

// machineCPUs is the number of CPUs the plan splits: the bench's own
// count before it pinned itself (pinnedEnv carries it across), as
// runtime.NumCPU counts only the CPUs a process may run on.
func machineCPUs() int {
	if n, err := strconv.Atoi(os.Getenv(pinnedEnv)); err == nil && n > 0 {
		return n
	}
	return runtime.NumCPU()
}

// pinSelf re-executes this bench on the load CPUs (once: the new process
// has pinnedEnv set); it returns only when already pinned or on failure.
func pinSelf(p pinPlan) error {
	if os.Getenv(pinnedEnv) != "" {
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	os.Setenv(pinnedEnv, strconv.Itoa(runtime.NumCPU()))
	return execPinned(p.load, append([]string{self}, os.Args[1:]...))
}

// pinnedCommand is argv run on cpus through this program's launcher form.
func pinnedCommand(cpus []int, argv []string) ([]string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return append([]string{self, execPinnedArg, cpuList(cpus)}, argv...), nil
}
