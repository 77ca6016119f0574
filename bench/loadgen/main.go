// Command loadgen is the load side of caddy-session's benchmark
// (bench/run.sh): a closed-loop HTTP/1.1 load generator, the fast upstream it
// measures through, and the small tools the script needs (spare ports,
// waiting for a port, establishing a session, fetching a profile, the
// report). Standard library only; loopback use only.
//
//	loadgen upstream -addr 127.0.0.1:0 -port-file F   the upstream ("ok", counts X-Session-*)
//	loadgen run -url U -c 64 -d 5s -warmup 1s ...    one measured run, a JSON line out
//	                    [-cookies FILE]               each request with the next cookie of FILE
//	                    [-method POST -body JSON]     the same request with a body (API writes)
//	loadgen login -url U/__session -body JSON         POST a session, print its Cookie header
//	loadgen login ... -n 1000000 -c 32 -o FILE        many sessions, one Cookie header per line
//	loadgen ports -n 3                                spare loopback ports
//	loadgen wait -timeout 30s ADDR...                 wait until the addresses accept
//	loadgen fetch -url U -o FILE                      GET a URL into a file (pprof)
//	loadgen report -in runs.jsonl -out results.md     the table, markdown or JSON
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "upstream":
		err = cmdUpstream(args)
	case "run":
		err = cmdRun(args)
	case "login":
		err = cmdLogin(args)
	case "ports":
		err = cmdPorts(args)
	case "wait":
		err = cmdWait(args)
	case "fetch":
		err = cmdFetch(args)
	case "report":
		err = cmdReport(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadgen upstream|run|login|ports|wait|fetch|report [flags] (-h for each)")
	os.Exit(2)
}

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ", ") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// loopbackOnly refuses targets that are not on this machine: the benchmark
// is never pointed at someone else's server.
func loopbackOnly(rawURL string) error {
	req, err := http.NewRequest("GET", rawURL, nil)
	if err != nil {
		return err
	}
	host := req.URL.Hostname()
	if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || host == "localhost" {
		return nil
	}
	return fmt.Errorf("%s: only loopback targets (127.0.0.1, ::1, localhost)", rawURL)
}

func cmdUpstream(args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address (loopback)")
	portFile := fs.String("port-file", "", "write the chosen port here once listening")
	cookie := fs.String("cookie-name", "__session", "session cookie name; counted as a leak if it reaches the upstream")
	maxLife := fs.Duration("max-life", 2*time.Hour, "exit after this long whatever happens (0: never)")
	fs.Parse(args)
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %s: listen on a loopback address only", *addr)
	}
	return serveUpstream(*addr, *portFile, *cookie, *maxLife)
}

// runRecord is one line of the results file: one measured run.
type runRecord struct {
	Config     string         `json:"config"`
	Round      int            `json:"round"`
	Pair       int            `json:"pair"`
	Conns      int            `json:"conns"`
	WarmupS    float64        `json:"warmup_s"`
	ExpectKeys int            `json:"expect_keys"`
	Cookie     bool           `json:"cookie"`
	Upstream   *upstreamStats `json:"upstream,omitempty"`
	Check      string         `json:"check"`
	// Caddy's CPU time (user+system, all threads) over the whole run,
	// warm-up included, per request the upstream received in that time:
	// what one request costs the proxy, much steadier than req/s on a
	// busy machine. Linux only (/proc); 0 when not measured.
	CaddyCPUus  float64 `json:"caddy_cpu_us_per_req,omitempty"`
	StartedUnix int64   `json:"started_unix"`
	*Result
}

func cmdRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	var headers multi
	target := fs.String("url", "", "target URL (http, loopback)")
	fs.Var(&headers, "H", "request header \"Name: value\" (repeatable)")
	conns := fs.Int("c", 64, "concurrent connections")
	dur := fs.Duration("d", 5*time.Second, "measured duration")
	warmup := fs.Duration("warmup", time.Second, "warm-up before measuring (not counted)")
	timeout := fs.Duration("timeout", 10*time.Second, "per-request timeout")
	engine := fs.String("engine", "go", "go (built in) or wrk")
	config := fs.String("config", "", "configuration name, for the report")
	round := fs.Int("round", 0, "round number, for the report")
	pair := fs.Int("pair", 0, "pair number (a config and the baseline run next to it)")
	statsURL := fs.String("stats", "", "upstream stats URL; checks what the upstream received")
	expectKeys := fs.Int("expect-keys", 0, "X-Session-* headers every proxied request must carry (0: none may)")
	maxErr := fs.Float64("max-error-rate", 0.001, "fail when more than this fraction of requests fail")
	out := fs.String("out", "", "append the result as a JSON line to this file")
	pid := fs.Int("pid", 0, "Caddy's process ID: measure its CPU time per request (Linux)")
	cookieFile := fs.String("cookies", "", "file of Cookie header values, one per line, sent in turn (loadgen login -n)")
	method := fs.String("method", "GET", "request method (go engine; POST with -body for API writes)")
	body := fs.String("body", "", "request body, sent with Content-Length (go engine)")
	contentType := fs.String("content-type", "application/json", "Content-Type of -body")
	fs.Parse(args)

	if *target == "" || *conns < 1 || *dur <= 0 || *warmup < 0 {
		return errors.New("need -url, -c >= 1, -d > 0, -warmup >= 0")
	}
	if err := loopbackOnly(*target); err != nil {
		return err
	}
	if *statsURL != "" {
		if err := loopbackOnly(*statsURL); err != nil {
			return err
		}
	}
	// Backstop: whatever happens, this process ends.
	limit := *warmup + *dur + *timeout + 30*time.Second
	time.AfterFunc(limit, func() {
		fmt.Fprintf(os.Stderr, "loadgen run: still running after %v; giving up\n", limit)
		os.Exit(3)
	})

	var before upstreamStats
	var err error
	if *statsURL != "" {
		if before, err = fetchStats(*statsURL); err != nil {
			return fmt.Errorf("upstream stats: %v", err)
		}
	}
	cpuBefore, cpuErr := procCPU(*pid)
	spec := loadSpec{URL: *target, Headers: headers, Conns: *conns, Warmup: *warmup, Duration: *dur, Timeout: *timeout,
		Method: strings.ToUpper(*method), Body: *body, ContentType: *contentType}
	if (spec.Method != "GET" || spec.Body != "") && *engine != "go" {
		return errors.New("-method and -body need the go engine")
	}
	if *cookieFile != "" {
		if *engine != "go" {
			return errors.New("-cookies needs the go engine")
		}
		data, err := os.ReadFile(*cookieFile)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(data), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				spec.Cookies = append(spec.Cookies, line)
			}
		}
		if len(spec.Cookies) == 0 {
			return fmt.Errorf("-cookies %s: no cookie in it", *cookieFile)
		}
	}
	started := time.Now()
	var res *Result
	switch *engine {
	case "go":
		res, err = runGo(spec)
	case "wrk":
		res, err = runWrk(spec)
	default:
		err = fmt.Errorf("-engine %q: go or wrk", *engine)
	}
	if err != nil {
		return err
	}
	rec := runRecord{
		Config: *config, Round: *round, Pair: *pair, Conns: *conns, WarmupS: warmup.Seconds(),
		ExpectKeys: *expectKeys, StartedUnix: started.Unix(), Result: res,
	}
	rec.Cookie = len(spec.Cookies) > 0
	for _, h := range headers {
		if name, _, _ := strings.Cut(h, ":"); strings.EqualFold(strings.TrimSpace(name), "cookie") {
			rec.Cookie = true
		}
	}
	var problems []string
	if *statsURL != "" {
		after, err := fetchStats(*statsURL)
		if err != nil {
			return fmt.Errorf("upstream stats: %v", err)
		}
		d := after.sub(before)
		rec.Upstream = &d
		if cpuAfter, err := procCPU(*pid); err == nil && cpuErr == nil && d.Requests > 0 {
			rec.CaddyCPUus = (cpuAfter - cpuBefore).Seconds() * 1e6 / float64(d.Requests)
		}
		problems = append(problems, checkUpstream(d, *expectKeys)...)
	}
	if res.Requests == 0 {
		problems = append(problems, "no successful request in the measured window")
	}
	if total := res.Requests + res.Errors; total > 0 && float64(res.Errors)/float64(total) > *maxErr {
		problems = append(problems, fmt.Sprintf("%d of %d requests failed (%v), over -max-error-rate %g",
			res.Errors, total, res.ErrorKinds, *maxErr))
	}
	rec.Check = "ok"
	if len(problems) > 0 {
		rec.Check = strings.Join(problems, "; ")
	}
	line, _ := json.Marshal(rec)
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		_, err = f.Write(append(line, '\n'))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	} else {
		fmt.Println(string(line))
	}
	cpu := "    -"
	if rec.CaddyCPUus > 0 { // measured against the upstream's count: not for API runs
		cpu = fmt.Sprintf("%5.1f", rec.CaddyCPUus)
	}
	fmt.Fprintf(os.Stderr, "  %-10s round %d  %7.0f req/s  p50 %6.2f ms  p99 %6.2f ms  errors %d  caddy %s µs CPU/req  upstream %s\n",
		*config, *round, res.RPS, res.P50Ms, res.P99Ms, res.Errors, cpu, describeUpstream(rec.Upstream))
	if len(problems) > 0 {
		return fmt.Errorf("config %s: %s", *config, rec.Check)
	}
	return nil
}

// checkUpstream says what is wrong with what the upstream received during a
// run: with a session, every request must carry exactly expectKeys
// X-Session-* headers; without one, none; never the session cookie.
func checkUpstream(d upstreamStats, expectKeys int) []string {
	var p []string
	if d.Requests == 0 {
		return []string{"the upstream received no request"}
	}
	if expectKeys > 0 {
		if d.SessionRequests != d.Requests {
			p = append(p, fmt.Sprintf("%d of %d proxied requests reached the upstream without X-Session-* headers",
				d.Requests-d.SessionRequests, d.Requests))
		}
		if want := uint64(expectKeys) * d.Requests; d.SessionHeaders != want {
			p = append(p, fmt.Sprintf("the upstream received %d X-Session-* headers over %d requests, want %d each",
				d.SessionHeaders, d.Requests, expectKeys))
		}
	} else if d.SessionHeaders != 0 {
		p = append(p, fmt.Sprintf("%d requests reached the upstream with X-Session-* headers, want none", d.SessionRequests))
	}
	if d.CookieLeaks != 0 {
		p = append(p, fmt.Sprintf("%d requests reached the upstream with the session cookie", d.CookieLeaks))
	}
	return p
}

func describeUpstream(d *upstreamStats) string {
	if d == nil {
		return "-"
	}
	per := 0.0
	if d.Requests > 0 {
		per = float64(d.SessionHeaders) / float64(d.Requests)
	}
	return fmt.Sprintf("%d reqs, %.2f X-Session-*/req", d.Requests, per)
}

func cmdLogin(args []string) error {
	fs := flag.NewFlagSet("login", flag.ExitOnError)
	target := fs.String("url", "", "the session API URL (http://127.0.0.1:port/__session)")
	body := fs.String("body", "", "JSON object to POST")
	n := fs.Int("n", 1, "how many sessions to create")
	conns := fs.Int("c", 8, "concurrent connections, with -n")
	out := fs.String("o", "", "write the Cookie header values here, one per line (default: stdout)")
	fs.Parse(args)
	if err := loopbackOnly(*target); err != nil {
		return err
	}
	var sent map[string]any
	if err := json.Unmarshal([]byte(*body), &sent); err != nil {
		return fmt.Errorf("-body: %v", err)
	}
	if *n < 1 || *conns < 1 {
		return errors.New("need -n >= 1 and -c >= 1")
	}
	c := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: *conns, DisableCompression: true},
	}
	cookies := make([]string, *n)
	var (
		wg      sync.WaitGroup
		next    atomic.Int64
		errOnce sync.Once
		first   error
	)
	for range min(*conns, *n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= *n {
					return
				}
				v, err := login(c, *target, *body, len(sent))
				if err != nil {
					errOnce.Do(func() { first = err })
					next.Store(int64(*n)) // stop the others
					return
				}
				cookies[i] = v
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	w := io.Writer(os.Stdout)
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriter(w)
	for _, v := range cookies {
		bw.WriteString(v)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// login creates one session through the API and returns its Cookie header
// value, checking that the keys sent came back.
func login(c *http.Client, target, body string, keys int) (string, error) {
	resp, err := c.Post(target, "application/json", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("POST %s: %s: %s", target, resp.Status, bytes.TrimSpace(got))
	}
	var back map[string]any
	if err := json.Unmarshal(got, &back); err != nil || len(back) != keys {
		return "", fmt.Errorf("POST %s answered %s, want the %d keys sent back", target, got, keys)
	}
	var parts []string
	for _, ck := range resp.Cookies() {
		if ck.MaxAge < 0 || ck.Value == "" {
			continue // an expired chunk
		}
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	if len(parts) == 0 {
		return "", fmt.Errorf("POST %s set no cookie", target)
	}
	return strings.Join(parts, "; "), nil
}

func cmdPorts(args []string) error {
	fs := flag.NewFlagSet("ports", flag.ExitOnError)
	n := fs.Int("n", 1, "how many")
	fs.Parse(args)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for i := 0; i < *n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

func cmdWait(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ExitOnError)
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	fs.Parse(args)
	deadline := time.Now().Add(*timeout)
	for _, addr := range fs.Args() {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s not accepting connections after %v: %v", addr, *timeout, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

func cmdFetch(args []string) error {
	fs := flag.NewFlagSet("fetch", flag.ExitOnError)
	target := fs.String("url", "", "URL to GET (loopback)")
	out := fs.String("o", "", "write the body here")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	fs.Parse(args)
	if err := loopbackOnly(*target); err != nil {
		return err
	}
	c := http.Client{Timeout: *timeout}
	resp, err := c.Get(*target)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("GET %s: %s: %s", *target, resp.Status, b)
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if _, err = io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// procCPU returns the user+system CPU time of process pid so far, from
// /proc/<pid>/stat (in clock ticks of 1/100 s, Linux's USER_HZ).
func procCPU(pid int) (time.Duration, error) {
	if pid <= 0 {
		return 0, errors.New("no pid")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count from
	// the last ')'. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unreadable /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("unreadable /proc stat")
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unreadable /proc stat")
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}
