package main

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"math/rand"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"
)

// The buckets tile the whole range: contiguous, no gaps, no overlaps, and
// every value lands in the bucket whose range holds it.
func TestBuckets(t *testing.T) {
	prevHi := uint64(0)
	for i := 0; i < nBuckets; i++ {
		lo, hi := bucketRange(i)
		if i > 0 && lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		if hi < lo {
			t.Fatalf("bucket %d: [%d, %d]", i, lo, hi)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d [%d, %d]: bucketOf gives %d and %d", i, lo, hi, bucketOf(lo), bucketOf(hi))
		}
		if i >= subCount && float64(hi-lo+1)/float64(lo) > 1.0/subCount+1e-12 {
			t.Fatalf("bucket %d [%d, %d] wider than 1/%d of its value", i, lo, hi, subCount)
		}
		prevHi = hi
		if hi == math.MaxUint64 {
			if i != nBuckets-1 {
				t.Fatalf("range ends at bucket %d of %d", i, nBuckets)
			}
			return
		}
	}
	t.Fatalf("buckets end at %d, not at the largest uint64", prevHi)
}

// Quantiles match the exact nearest-rank quantile of the samples to within
// the histogram's resolution.
func TestQuantiles(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var parts [4]Histogram // recorded apart, then merged, as the workers do
	var all []float64
	for i := 0; i < 100000; i++ {
		// Log-normal around 1 ms, like real latencies, with a long tail.
		d := time.Duration(math.Exp(rng.NormFloat64()*0.8) * float64(time.Millisecond))
		parts[i%4].Record(d)
		all = append(all, float64(d))
	}
	var h Histogram
	for i := range parts {
		h.Merge(&parts[i])
	}
	sort.Float64s(all)
	if h.Count() != uint64(len(all)) {
		t.Fatalf("count %d, want %d", h.Count(), len(all))
	}
	for _, q := range []float64{0.001, 0.5, 0.9, 0.99, 0.999, 1} {
		exact := all[int(math.Ceil(q*float64(len(all))))-1]
		got := float64(h.Quantile(q))
		if rel := math.Abs(got-exact) / exact; rel > 1.0/subCount {
			t.Errorf("q%.3f = %v, exact %v (off by %.2f%%)", q, time.Duration(got), time.Duration(exact), rel*100)
		}
	}
	if h.Max() != time.Duration(all[len(all)-1]) {
		t.Errorf("max %v, want %v", h.Max(), time.Duration(all[len(all)-1]))
	}
	var sum float64
	for _, v := range all {
		sum += v
	}
	if mean := sum / float64(len(all)); math.Abs(float64(h.Mean())-mean) > 1 {
		t.Errorf("mean %v, want %v", h.Mean(), time.Duration(mean))
	}
}

// Small values are exact, and the nearest-rank rule picks the right sample.
func TestQuantileSmall(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 {
		t.Fatal("empty histogram: want 0")
	}
	for _, v := range []time.Duration{10, 20, 30, 40} {
		h.Record(v)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.01, 10}, {0.25, 10}, {0.26, 20}, {0.5, 20}, {0.75, 30}, {0.99, 40}, {1, 40}} {
		if got := h.Quantile(c.q); got != c.want {
			t.Errorf("q%v = %v, want %v", c.q, got, c.want)
		}
	}
}

func TestMedian(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median(3,1,2) = %v", m)
	}
	if m := median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("median(4,1,3,2) = %v", m)
	}
}

// The generator's response reader: Content-Length, chunked and interim
// responses, keep-alive and close.
func TestReadResponse(t *testing.T) {
	stream := "HTTP/1.1 100 Continue\r\n\r\n" +
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok" +
		"HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nTrailer: 1\r\n\r\n" +
		"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
	br := bufio.NewReader(strings.NewReader(stream))
	for _, want := range []struct {
		status    int
		closeConn bool
	}{{200, false}, {502, false}, {204, true}} {
		status, closeConn, err := readResponse(br)
		if err != nil || status != want.status || closeConn != want.closeConn {
			t.Fatalf("got %d close=%v err=%v, want %d close=%v", status, closeConn, err, want.status, want.closeConn)
		}
	}
	if _, _, err := readResponse(bufio.NewReader(strings.NewReader("garbage\r\n\r\n"))); err == nil {
		t.Fatal("garbage: want an error")
	}
}

func TestParseWrk(t *testing.T) {
	out := `Running 5s test @ http://127.0.0.1:8080/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.10ms    1.20ms  45.00ms   90.00%
    Req/Sec    10.50k   600.00     11.20k    70.00%
  Latency Distribution
     50%    2.90ms
     75%    3.50ms
     90%    4.20ms
     99%    8.10ms
  104512 requests in 5.00s, 12.50MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  20902.40
Transfer/sec:      2.50MB
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 104512 || r.Seconds != 5 || r.RPS != 20902.40 || r.P50Ms != 2.9 || r.P99Ms != 8.1 ||
		r.MeanMs != 3.1 || r.MaxMs != 45 || r.Errors != 7 {
		t.Errorf("parsed %+v", r)
	}
}

// With cookies, each request is a whole, valid request carrying the next
// cookie, and the list wraps around.
func TestRequestCookies(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:1/products?x=1")
	req, err := buildRequest(u, loadSpec{Headers: []string{"Accept-Language: de"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	cookies := []string{"__session=a", "__session=b; __session.1=c", "__session=d"}
	w := &worker{req: req, cookies: cookies, next: 1}
	for i, want := range []string{cookies[1], cookies[2], cookies[0], cookies[1]} {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(w.request())))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if got := r.Header.Get("Cookie"); got != want || r.URL.RequestURI() != "/products?x=1" || r.Header.Get("Accept-Language") != "de" {
			t.Fatalf("request %d: Cookie %q (want %q), URI %q, headers %v", i, got, want, r.URL.RequestURI(), r.Header)
		}
	}
	// Without cookies: the one pre-rendered request, ending the header.
	plain, _ := buildRequest(u, loadSpec{}, false)
	if w := (&worker{req: plain}); !bytes.HasSuffix(w.request(), []byte("\r\n\r\n")) {
		t.Fatalf("plain request %q does not end its header", w.request())
	}
}

// A POST with a body (the API write runs): a whole, valid request, twice
// in a row on one connection, each with its body.
func TestRequestBody(t *testing.T) {
	u, _ := url.Parse("http://127.0.0.1:1/__session")
	body := `{"cart":"gid://shopify/Cart/c2"}`
	req, err := buildRequest(u, loadSpec{Method: "POST", Body: body, ContentType: "application/json",
		Headers: []string{"Cookie: __session=a"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(bytes.NewReader(append(append([]byte(nil), req...), req...)))
	for i := range 2 {
		r, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got, err := io.ReadAll(r.Body)
		if err != nil || string(got) != body || r.Method != "POST" || r.ContentLength != int64(len(body)) ||
			r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Cookie") != "__session=a" {
			t.Fatalf("request %d: %s %v, body %q (%v)", i, r.Method, r.Header, got, err)
		}
	}
	if _, err := buildRequest(u, loadSpec{Method: "POST", Body: body}, true); err == nil {
		t.Fatal("a body with -cookies was accepted")
	}
}
