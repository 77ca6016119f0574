package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// runWrk runs the same load with wrk (a warm-up run that is thrown away,
// then the measured run) and reads its report.
func runWrk(spec loadSpec) (*Result, error) {
	bin, err := exec.LookPath("wrk")
	if err != nil {
		return nil, fmt.Errorf("engine wrk: wrk is not installed (apt-get install -y wrk), or use the built-in engine")
	}
	threads := runtime.NumCPU()
	if threads > spec.Conns {
		threads = spec.Conns
	}
	args := func(d time.Duration) []string {
		a := []string{
			"-t", strconv.Itoa(threads), "-c", strconv.Itoa(spec.Conns),
			"-d", fmt.Sprintf("%ds", int(d.Round(time.Second)/time.Second)),
			"--timeout", fmt.Sprintf("%ds", int(spec.Timeout/time.Second)),
			"--latency",
		}
		for _, h := range spec.Headers {
			a = append(a, "-H", h)
		}
		return append(a, spec.URL)
	}
	wrk := func(d time.Duration) (string, error) {
		// Bounded: wrk stops at -d; the context is a backstop.
		ctx, cancel := context.WithTimeout(context.Background(), d+spec.Timeout+10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, args(d)...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("wrk: %v\n%s", err, out)
		}
		return string(out), nil
	}
	if spec.Warmup >= time.Second {
		if _, err := wrk(spec.Warmup); err != nil {
			return nil, err
		}
	}
	if spec.Duration < time.Second {
		return nil, fmt.Errorf("engine wrk: duration %v is under wrk's 1s resolution", spec.Duration)
	}
	out, err := wrk(spec.Duration)
	if err != nil {
		return nil, err
	}
	return parseWrk(out)
}

var (
	wrkTotal   = regexp.MustCompile(`(\d+) requests in ([0-9.]+)(us|ms|s|m),`)
	wrkRPS     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkPct     = regexp.MustCompile(`^\s*(50|75|90|99)%\s+([0-9.]+)(us|ms|s|m)\s*$`)
	wrkLatency = regexp.MustCompile(`^\s*Latency\s+([0-9.]+)(us|ms|s|m)\s+[0-9.]+\S+\s+([0-9.]+)(us|ms|s|m)`)
	wrkNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	wrkSocket  = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

func wrkMs(v, unit string) float64 {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "us":
		return f / 1000
	case "ms":
		return f
	case "s":
		return f * 1000
	case "m":
		return f * 60000
	}
	return f
}

// parseWrk reads wrk's --latency report. wrk counts 3xx as success; the
// upstream here only answers 200, so that changes nothing.
func parseWrk(out string) (*Result, error) {
	res := &Result{Engine: "wrk"}
	var gotRPS, gotP50, gotP99 bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := wrkTotal.FindStringSubmatch(line); m != nil {
			res.Requests, _ = strconv.ParseUint(m[1], 10, 64)
			res.Seconds = wrkMs(m[2], m[3]) / 1000
		}
		if m := wrkRPS.FindStringSubmatch(line); m != nil {
			res.RPS, _ = strconv.ParseFloat(m[1], 64)
			gotRPS = true
		}
		if m := wrkLatency.FindStringSubmatch(line); m != nil {
			res.MeanMs = wrkMs(m[1], m[2])
			res.MaxMs = wrkMs(m[3], m[4])
		}
		if m := wrkPct.FindStringSubmatch(line); m != nil {
			v := wrkMs(m[2], m[3])
			switch m[1] {
			case "50":
				res.P50Ms, gotP50 = v, true
			case "90":
				res.P90Ms = v
			case "99":
				res.P99Ms, gotP99 = v, true
			}
		}
		if m := wrkNon2xx.FindStringSubmatch(line); m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			res.Errors += n
			res.addKind("non-2xx/3xx", n)
		}
		if m := wrkSocket.FindStringSubmatch(line); m != nil {
			for i, kind := range []string{"connect", "read", "write", "timeout"} {
				n, _ := strconv.ParseUint(m[i+1], 10, 64)
				res.Errors += n
				res.addKind(kind, n)
			}
		}
	}
	if !gotRPS || !gotP50 || !gotP99 {
		return nil, fmt.Errorf("could not read wrk's report:\n%s", out)
	}
	return res, nil
}

func (r *Result) addKind(kind string, n uint64) {
	if n == 0 {
		return
	}
	if r.ErrorKinds == nil {
		r.ErrorKinds = map[string]int64{}
	}
	r.ErrorKinds[kind] += int64(n)
}
