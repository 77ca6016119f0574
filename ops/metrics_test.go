package ops

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// metricsSite has three session handlers sharing a cookie name and secret:
// the main one on the memory store in front of the upstream, and two on a
// Redis nobody listens on, to count fail_open and fail_closed.
func metricsSite(deadRedis int, extra string) string {
	return fmt.Sprintf(`handle /open/* {
	session {
		secret %[1]s
		store redis redis://127.0.0.1:%[2]d/0
		admin_id open
	}
	respond "open"
}
handle /closed/* {
	session {
		secret %[1]s
		store redis redis://127.0.0.1:%[2]d/0
		admin_id closed
		on_store_error fail_closed
	}
	respond "closed"
}
handle {
	session {
		secret %[1]s
		store memory {
			name shop
		}
		index_key customerId
		client_writable cart
		%[3]s
	}
	reverse_proxy {{UPSTREAM}}
}`, secret, deadRedis, extra)
}

const metricsGlobal = "servers {\n\t\tmetrics\n\t}"

// Metrics scraped from Caddy's admin endpoint before traffic, after it, and
// after a reload (which gives Caddy a new registry): every family is
// there, counts what happened, and keeps counting across the reload.
func TestMetricsAcrossReload(t *testing.T) {
	t.Parallel()
	dead := freePort(t)
	c := StartCaddy(t, metricsGlobal, metricsSite(dead, ""))

	m := scrape(t, c)
	for _, s := range []string{
		`caddy_session_created_total{id="__session",store="memory"} 0`,
		`caddy_session_loaded_total{id="__session",store="memory"} 0`,
		`caddy_session_destroyed_total{id="__session",store="memory"} 0`,
		`caddy_session_memory_sessions{max_sessions="100000",pool="shop"} 0`,
		`caddy_session_memory_evictions_total{max_sessions="100000",pool="shop"} 0`,
		`caddy_session_store_unavailable_requests_total{id="open",policy="fail_open"} 0`,
		`caddy_session_store_errors_total{id="open",operation="load",store="redis"} 0`,
	} {
		m.want(t, s)
	}

	// Traffic: three logins (a session created, written and rotated
	// each), a visit each, an anonymous session through the API,
	// destroyed, and its stale cookie sent again.
	var shoppers []*Browser
	for i := range 3 {
		b := c.NewBrowser()
		b.Login(t, fmt.Sprintf("c_%d", i))
		if who := b.Who(t); who != fmt.Sprintf("c_%d", i) {
			t.Fatalf("shopper %d is %q upstream", i, who)
		}
		shoppers = append(shoppers, b)
	}
	anon := c.NewBrowser()
	for _, q := range []struct {
		method, body string
		status       int
	}{
		{"GET", "", 200},
		{"POST", `{"cart":[1]}`, 200},
		{"OPTIONS", "", 405},
	} {
		if r := anon.Do(t, q.method, "/__session", q.body); r.Status != q.status {
			t.Fatalf("%s /__session: %d %s", q.method, r.Status, r.Body)
		}
	}
	if r := do(t, "PATCH", c.Base+"/__session", ""); r.Status != 415 {
		t.Fatalf("PATCH without a body: %d", r.Status)
	}
	stale := anon.Cookie
	if r := anon.Do(t, "DELETE", "/__session", ""); r.Status != 204 {
		t.Fatalf("DELETE: %d", r.Status)
	}
	if r := do(t, "GET", c.Base+"/whoami", "", "Cookie: __session="+stale); r.Body != "anonymous" {
		t.Fatalf("the destroyed session's cookie: %q", r.Body)
	}
	// The store behind /open and /closed is down.
	cookie := "Cookie: __session=" + shoppers[0].Cookie
	if r := do(t, "GET", c.Base+"/open/x", "", cookie); r.Status != 200 {
		t.Fatalf("fail_open: %d %s", r.Status, r.Body)
	}
	if r := do(t, "GET", c.Base+"/closed/x", "", cookie); r.Status != 503 {
		t.Fatalf("fail_closed: %d %s", r.Status, r.Body)
	}

	m = scrape(t, c)
	for _, s := range []string{
		`caddy_session_created_total{id="__session",store="memory"} 4`,
		`caddy_session_written_total{id="__session",store="memory"} 4`,
		`caddy_session_rotated_total{id="__session",store="memory"} 3`,
		`caddy_session_destroyed_total{id="__session",store="memory"} 1`,
		`caddy_session_expired_total{id="__session",store="memory"} 1`,
		`caddy_session_loaded_total{id="__session",store="memory"} 5`, // 3 visits, the OPTIONS and the DELETE
		`caddy_session_api_requests_total{code="200",id="__session",method="GET"} 1`,
		`caddy_session_api_requests_total{code="200",id="__session",method="POST"} 1`,
		`caddy_session_api_requests_total{code="204",id="__session",method="DELETE"} 1`,
		`caddy_session_api_requests_total{code="405",id="__session",method="OTHER"} 1`,
		`caddy_session_api_requests_total{code="415",id="__session",method="PATCH"} 1`,
		`caddy_session_memory_sessions{max_sessions="100000",pool="shop"} 3`,
		`caddy_session_store_unavailable_requests_total{id="open",policy="fail_open"} 1`,
		`caddy_session_store_unavailable_requests_total{id="closed",policy="fail_closed"} 1`,
		`caddy_session_store_errors_total{id="open",operation="load",store="redis"} 1`,
		`caddy_session_store_errors_total{id="closed",operation="load",store="redis"} 1`,
		`caddy_session_store_errors_total{id="__session",operation="load",store="memory"} 0`,
		`caddy_session_cookie_chunks_count{id="__session"} 4`, // 3 logins (rotated), 1 POST
	} {
		m.want(t, s)
	}
	// Latency: every load and merge of the memory store was timed.
	if n := m.value(t, `caddy_session_store_operation_duration_seconds_count{id="__session",operation="merge",store="memory"}`); n != 4 {
		t.Fatalf("merge latency count %v, want 4", n)
	}
	if n := m.value(t, `caddy_session_store_operation_duration_seconds_count{id="__session",operation="load",store="memory"}`); n < 5 {
		t.Fatalf("load latency count %v, want at least 5", n)
	}
	if n := m.value(t, `caddy_session_cookie_size_bytes_sum{id="__session"}`); n < 4*100 {
		t.Fatalf("cookie size sum %v: too small for 4 cookies", n)
	}
	// Caddy's own HTTP metrics are there too (servers { metrics }).
	if !strings.Contains(m.text, "caddy_http_requests_total") {
		t.Fatal("no caddy_http_requests_total: the metrics option did not take")
	}

	// Reload a changed config twice: new registries, no duplicate
	// registration error, counters carry on, the memory pool is kept.
	c.Reload(t, metricsGlobal, metricsSite(dead, "idle_timeout 1h"))
	c.Reload(t, metricsGlobal, metricsSite(dead, "idle_timeout 2h"))
	m = scrape(t, c)
	m.want(t, `caddy_session_created_total{id="__session",store="memory"} 4`)
	m.want(t, `caddy_session_memory_sessions{max_sessions="100000",pool="shop"} 3`)
	if who := shoppers[1].Who(t); who != "c_1" {
		t.Fatalf("after the reloads shopper 1 is %q: the memory pool was not kept", who)
	}
	late := c.NewBrowser()
	late.Login(t, "c_late")
	m = scrape(t, c)
	m.want(t, `caddy_session_created_total{id="__session",store="memory"} 5`)
	m.want(t, `caddy_session_memory_sessions{max_sessions="100000",pool="shop"} 4`)
	m.want(t, `caddy_session_loaded_total{id="__session",store="memory"} 6`)
	if strings.Contains(c.Logs(), "registering session metrics") || strings.Contains(c.Logs(), "duplicate metrics collector") {
		t.Fatalf("a metrics registration error in the log")
	}
}

// scraped is one scrape of the admin metrics endpoint.
type scraped struct {
	text   string
	series map[string]float64 // name{sorted labels} → value
}

func scrape(t *testing.T, c *Caddy) *scraped {
	t.Helper()
	r := do(t, "GET", c.Admin+"/metrics", "")
	if r.Status != 200 {
		t.Fatalf("GET /metrics: %d %s", r.Status, r.Body)
	}
	s := &scraped{text: r.Body, series: map[string]float64{}}
	for _, line := range strings.Split(r.Body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		s.series[line[:i]] = v
	}
	return s
}

// value returns a series' value ("name{a=\"1\",b=\"2\"}", labels sorted as
// Prometheus writes them), failing the test when it is missing.
func (s *scraped) value(t *testing.T, series string) float64 {
	t.Helper()
	v, ok := s.series[series]
	if !ok {
		var near []string
		name, _, _ := strings.Cut(series, "{")
		for k := range s.series {
			if strings.HasPrefix(k, name) {
				near = append(near, k)
			}
		}
		t.Fatalf("no series %s; series of that name:\n%s", series, strings.Join(near, "\n"))
	}
	return v
}

// want checks "series value".
func (s *scraped) want(t *testing.T, line string) {
	t.Helper()
	i := strings.LastIndexByte(line, ' ')
	want, _ := strconv.ParseFloat(line[i+1:], 64)
	if got := s.value(t, line[:i]); got != want {
		t.Fatalf("%s = %v, want %v", line[:i], got, want)
	}
}
