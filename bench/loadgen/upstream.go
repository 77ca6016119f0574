package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// statsPath is answered by the upstream itself, on its own port: the run
// reads it directly, never through Caddy.
const statsPath = "/__upstream/stats"

// upstreamStats counts what the upstream received, to prove that the session
// module really forwarded something (a broken module must not look fast).
type upstreamStats struct {
	Requests        uint64 `json:"requests"`         // every proxied request
	SessionRequests uint64 `json:"session_requests"` // requests with at least one X-Session-* header
	SessionHeaders  uint64 `json:"session_headers"`  // X-Session-* headers, summed
	CookieLeaks     uint64 `json:"cookie_leaks"`     // requests whose Cookie header still carried the session cookie
}

func (s upstreamStats) sub(o upstreamStats) upstreamStats {
	return upstreamStats{
		Requests:        s.Requests - o.Requests,
		SessionRequests: s.SessionRequests - o.SessionRequests,
		SessionHeaders:  s.SessionHeaders - o.SessionHeaders,
		CookieLeaks:     s.CookieLeaks - o.CookieLeaks,
	}
}

type upstream struct {
	cookieName                                string
	requests, sessReqs, sessHeaders, cookieLk atomic.Uint64
}

var okBody = []byte("ok")

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == statsPath {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(upstreamStats{
			Requests:        u.requests.Load(),
			SessionRequests: u.sessReqs.Load(),
			SessionHeaders:  u.sessHeaders.Load(),
			CookieLeaks:     u.cookieLk.Load(),
		})
		return
	}
	u.requests.Add(1)
	var n uint64
	for name := range r.Header {
		if len(name) > len("x-session-") && strings.EqualFold(name[:len("x-session-")], "x-session-") {
			n++
		}
	}
	if n > 0 {
		u.sessReqs.Add(1)
		u.sessHeaders.Add(n)
	}
	if u.cookieName != "" {
		for _, c := range r.Header["Cookie"] {
			if strings.Contains(c, u.cookieName+"=") {
				u.cookieLk.Add(1)
				break
			}
		}
	}
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
	}
	h := w.Header()
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	w.Write(okBody)
}

// serveUpstream is the fast upstream: it answers "ok" to everything, and
// counts the X-Session-* headers it receives. It writes its address to
// portFile (when given) once it listens, and stops after maxLife, so a
// crashed script never leaves it behind for long.
func serveUpstream(addr, portFile, cookieName string, maxLife time.Duration) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if portFile != "" {
		port := ln.Addr().(*net.TCPAddr).Port
		// Write then rename, so a reader never sees a half-written file.
		tmp := portFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%d\n", port)), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, portFile); err != nil {
			return err
		}
	}
	srv := &http.Server{
		Handler:           &upstream{cookieName: cookieName},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	if maxLife > 0 {
		time.AfterFunc(maxLife, func() {
			fmt.Fprintf(os.Stderr, "upstream: stopping after -max-life %v\n", maxLife)
			os.Exit(0)
		})
	}
	return srv.Serve(ln)
}

// fetchStats reads the upstream's counters.
func fetchStats(url string) (upstreamStats, error) {
	var s upstreamStats
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return s, fmt.Errorf("%s: %s", url, resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&s)
	return s, err
}
