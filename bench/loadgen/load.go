package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// loadSpec is one closed-loop run.
type loadSpec struct {
	URL      string
	Headers  []string // "Name: value"
	Conns    int
	Warmup   time.Duration
	Duration time.Duration
	Timeout  time.Duration // per request

	// Method and Body make every request a Method with Body (Content-Type
	// ContentType), for the API write runs; default GET without a body.
	Method      string
	Body        string
	ContentType string

	// Cookies, when set, are Cookie header values used in turn: each
	// request sends the next one (connection i starts at the i-th slice of
	// the list), so that a run spreads over many sessions.
	Cookies []string
}

// Result is what a run measured (the window after the warm-up only).
type Result struct {
	Engine     string           `json:"engine"`
	Requests   uint64           `json:"requests"`
	Seconds    float64          `json:"seconds"`
	RPS        float64          `json:"rps"`
	P50Ms      float64          `json:"p50_ms"`
	P90Ms      float64          `json:"p90_ms"`
	P99Ms      float64          `json:"p99_ms"`
	MaxMs      float64          `json:"max_ms"`
	MeanMs     float64          `json:"mean_ms"`
	Errors     uint64           `json:"errors"`
	ErrorKinds map[string]int64 `json:"error_kinds,omitempty"`
}

// buildRequest renders the one request every connection sends, again and
// again: a GET over keep-alive HTTP/1.1 (or spec.Method with spec.Body).
// With cookies, it renders the request without its final CRLF, and each
// request appends its Cookie header and the CRLF (see worker.roundTrip);
// cookies cannot go with a body.
func buildRequest(u *url.URL, spec loadSpec, cookies bool) ([]byte, error) {
	var b bytes.Buffer
	path := u.RequestURI()
	method := spec.Method
	if method == "" {
		method = "GET"
	}
	if strings.ContainsAny(method, " \r\n") || strings.ContainsAny(spec.ContentType, "\r\n") {
		return nil, fmt.Errorf("bad method %q or content type %q", method, spec.ContentType)
	}
	if spec.Body != "" && cookies {
		return nil, errors.New("a request body cannot go with -cookies")
	}
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: caddy-session-bench\r\nAccept: */*\r\n", method, path, u.Host)
	headers := spec.Headers
	if spec.Body != "" || method == "POST" || method == "PUT" || method == "PATCH" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(spec.Body))
		if spec.ContentType != "" {
			fmt.Fprintf(&b, "Content-Type: %s\r\n", spec.ContentType)
		}
	}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(h, "\r\n") {
			return nil, fmt.Errorf("bad header %q: want \"Name: value\"", h)
		}
		fmt.Fprintf(&b, "%s: %s\r\n", name, strings.TrimSpace(value))
	}
	if !cookies {
		b.WriteString("\r\n")
		b.WriteString(spec.Body)
	}
	return b.Bytes(), nil
}

// runGo runs the built-in generator: Conns connections, each sending its
// next request as soon as the previous response has been read (closed loop),
// for Warmup+Duration; only responses completed inside the measured window
// count. It stops by itself: no request is started after the end, and each
// has a deadline.
func runGo(spec loadSpec) (*Result, error) {
	u, err := url.Parse(spec.URL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("url %q: want http://host:port/path", spec.URL)
	}
	req, err := buildRequest(u, spec, len(spec.Cookies) > 0)
	if err != nil {
		return nil, err
	}
	for _, c := range spec.Cookies {
		if c == "" || strings.ContainsAny(c, "\r\n") {
			return nil, fmt.Errorf("bad cookie %q: want one Cookie header value per line", c)
		}
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	if spec.Timeout <= 0 {
		spec.Timeout = 10 * time.Second
	}

	start := time.Now()
	from := start.Add(spec.Warmup)
	end := from.Add(spec.Duration)

	workers := make([]*worker, spec.Conns)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{addr: addr, req: req, timeout: spec.Timeout, errs: map[string]int64{}, cookies: spec.Cookies}
		if n := len(spec.Cookies); n > 0 {
			w.next = i * n / len(workers)
			w.buf = make([]byte, 0, len(req)+4096)
		}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(from, end)
		}()
	}
	wg.Wait()

	var h Histogram
	res := &Result{Engine: "go", ErrorKinds: map[string]int64{}}
	for _, w := range workers {
		h.Merge(&w.hist)
		res.Errors += w.errors
		for k, v := range w.errs {
			res.ErrorKinds[k] += v
		}
	}
	res.Requests = h.Count()
	res.Seconds = spec.Duration.Seconds()
	res.RPS = float64(res.Requests) / res.Seconds
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	res.P50Ms = ms(h.Quantile(0.50))
	res.P90Ms = ms(h.Quantile(0.90))
	res.P99Ms = ms(h.Quantile(0.99))
	res.MaxMs = ms(h.Max())
	res.MeanMs = ms(h.Mean())
	if len(res.ErrorKinds) == 0 {
		res.ErrorKinds = nil
	}
	return res, nil
}

type worker struct {
	addr    string
	req     []byte
	timeout time.Duration

	cookies []string // Cookie values used in turn, if any
	next    int      // index of the next one
	buf     []byte   // the request being sent, with its cookie

	conn net.Conn
	br   *bufio.Reader

	hist   Histogram // successful (2xx) responses in the window
	errors uint64    // failed requests in the window
	errs   map[string]int64
}

func (w *worker) fail(kind string) {
	w.errors++
	w.errs[kind]++
}

func (w *worker) close() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

func (w *worker) loop(from, end time.Time) {
	defer w.close()
	for {
		t0 := time.Now()
		if !t0.Before(end) {
			return
		}
		if w.conn == nil {
			c, err := net.DialTimeout("tcp", w.addr, 2*time.Second)
			if err != nil {
				if !t0.Before(from) {
					w.fail("connect")
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetNoDelay(true)
			}
			w.conn = c
			if w.br == nil {
				w.br = bufio.NewReaderSize(c, 64<<10)
			} else {
				w.br.Reset(c)
			}
			t0 = time.Now()
		}
		w.conn.SetDeadline(t0.Add(w.timeout))
		status, closeConn, err := w.roundTrip()
		t1 := time.Now()
		inWindow := !t1.Before(from) && !t1.After(end)
		switch {
		case err != nil:
			w.close()
			if inWindow {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					w.fail("timeout")
				} else {
					w.fail("read/write")
				}
			}
			continue
		case status < 200 || status > 299:
			if inWindow {
				w.fail("status " + strconv.Itoa(status))
			}
		case inWindow:
			w.hist.Record(t1.Sub(t0))
		}
		if closeConn {
			w.close()
		}
	}
}

// request returns the next request to send: the pre-rendered one, or with
// cookies, that with the next cookie.
func (w *worker) request() []byte {
	if len(w.cookies) == 0 {
		return w.req
	}
	w.buf = append(append(append(append(w.buf[:0], w.req...), "Cookie: "...), w.cookies[w.next]...), "\r\n\r\n"...)
	if w.next++; w.next == len(w.cookies) {
		w.next = 0
	}
	return w.buf
}

func (w *worker) roundTrip() (status int, closeConn bool, err error) {
	if _, err = w.conn.Write(w.request()); err != nil {
		return 0, true, err
	}
	return readResponse(w.br)
}

var errMalformed = errors.New("malformed HTTP response")

// readResponse reads one HTTP/1.x response to a GET from br, discarding its
// body (Content-Length, chunked, or until close). It reports the status and
// whether the connection must be closed afterwards. It is deliberately
// minimal, so the generator spends as little CPU as possible per request.
func readResponse(br *bufio.Reader) (status int, closeConn bool, err error) {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, true, err
		}
		// "HTTP/1.1 200 OK\r\n"
		if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
			return 0, true, errMalformed
		}
		status, err = strconv.Atoi(string(line[9:12]))
		if err != nil {
			return 0, true, errMalformed
		}
		closeConn = line[7] == '0' // HTTP/1.0 closes unless told otherwise
		contentLength := int64(-1)
		chunked := false
		for {
			line, err = br.ReadSlice('\n')
			if err != nil {
				return 0, true, err
			}
			line = bytes.TrimRight(line, "\r\n")
			if len(line) == 0 {
				break
			}
			name, value, ok := bytes.Cut(line, []byte(":"))
			if !ok {
				return 0, true, errMalformed
			}
			value = bytes.TrimSpace(value)
			switch {
			case asciiEqualFold(name, "content-length"):
				contentLength, err = strconv.ParseInt(string(value), 10, 64)
				if err != nil || contentLength < 0 {
					return 0, true, errMalformed
				}
			case asciiEqualFold(name, "transfer-encoding"):
				chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
			case asciiEqualFold(name, "connection"):
				v := bytes.ToLower(value)
				if bytes.Contains(v, []byte("close")) {
					closeConn = true
				} else if bytes.Contains(v, []byte("keep-alive")) {
					closeConn = false
				}
			}
		}
		switch {
		case status >= 100 && status < 200:
			continue // interim response; the real one follows
		case status == 204 || status == 304:
			return status, closeConn, nil
		case chunked:
			return status, closeConn, discardChunked(br)
		case contentLength >= 0:
			_, err = br.Discard(int(contentLength))
			return status, closeConn, err
		default:
			_, err = io.Copy(io.Discard, br)
			return status, true, err
		}
	}
}

func discardChunked(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || size < 0 {
			return errMalformed
		}
		if size == 0 {
			for { // trailers, up to the blank line
				line, err = br.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if _, err = br.Discard(int(size)); err != nil {
			return err
		}
		if line, err = br.ReadSlice('\n'); err != nil {
			return err
		}
		if len(bytes.TrimRight(line, "\r\n")) != 0 {
			return errMalformed
		}
	}
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// median of a slice (which it sorts).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}
