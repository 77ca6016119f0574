package testkit

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFreePortDistinct(t *testing.T) {
	seen := map[int]bool{}
	for range 20 {
		p := FreePort(t)
		if seen[p] || reserved[p] {
			t.Fatalf("port %d handed out twice or reserved", p)
		}
		seen[p] = true
		// Below the ephemeral range, where no outgoing connection can
		// take it before the server binds it.
		if low := ephemeralLow(); low-portFloor >= 1000 && (p < portFloor || p >= low) {
			t.Fatalf("port %d is outside %d-%d", p, portFloor, low-1)
		}
	}
}

// A port some other program listens on is never handed out, whichever
// address it listens on.
func TestFreePortSkipsListeners(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "0.0.0.0:0", "[::]:0"} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Logf("%s: %v (no such stack here)", addr, err)
			continue
		}
		held := l.Addr().(*net.TCPAddr).Port
		if p, err := freePortIn(held, held); err == nil {
			t.Errorf("port %d, held by a listener on %s, was handed out as %d", held, addr, p)
		}
		// With one free neighbour, that neighbour is the answer.
		other, err := freePortIn(held-1, held)
		if err == nil && other == held {
			t.Errorf("port %d, held by a listener on %s, was handed out", held, addr)
		}
		l.Close()
	}
}

func TestCheckOutput(t *testing.T) {
	for out, bad := range map[string]bool{
		`{"level":"info","msg":"serving initial configuration"}`: false,
		"==================\nWARNING: DATA RACE\nWrite at ...":   true,
		"panic: boom\n\ngoroutine 1 [running]:":                  true,
		"http: panic serving 127.0.0.1:1234: boom":               true,
		"fatal error: concurrent map writes":                     true,
	} {
		if err := CheckOutput("x", out); (err != nil) != bad {
			t.Errorf("CheckOutput(%q) = %v, want an error: %v", out, err, bad)
		}
	}
}

func TestRedis(t *testing.T) {
	t.Parallel()
	s := StartRedis(t)
	if err := RedisPing(s.Addr(), nil, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := RedisPing(s.Addr(), nil, 200*time.Millisecond); err == nil {
		t.Fatal("a stopped redis-server answered PING")
	}
	s.Restart()
	if err := RedisPing(s.Addr(), nil, time.Second); err != nil {
		t.Fatalf("after Restart: %v", err)
	}
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	p := StartPostgres(t)
	out, err := p.Psql("select 40 + 2")
	if err != nil || out != "42" {
		t.Fatalf("psql: %q %v\n%s", out, err, p.Logs())
	}
	p.Stop()
	if !strings.Contains(p.Logs(), "database system is shut down") {
		t.Fatalf("the server did not shut down cleanly:\n%s", p.Logs())
	}
}

// TestPostgresKillStart: Kill ends the server like a crash (no clean
// shutdown), Start brings it back on the same port with its data, after
// crash recovery; a committed row survives (synchronous_commit on).
func TestPostgresKillStart(t *testing.T) {
	t.Parallel()
	p := StartPostgres(t, "-c", "synchronous_commit=on")
	if out, err := p.Psql("create table t (v int); insert into t values (7)"); err != nil {
		t.Fatalf("psql: %q %v", out, err)
	}
	port := p.Port
	p.proc.mu.Lock()
	children := childPIDs(p.proc.cmd.Process.Pid)
	p.proc.mu.Unlock()
	if runtime.GOOS == "linux" && len(children) < 3 {
		t.Fatalf("the postmaster has %d children, want its checkpointer, WAL writer...", len(children))
	}
	p.Kill()
	// Every process of the server is gone at once, not only the
	// postmaster: PostgreSQL's children each have a process group of
	// their own. (A zombie, dead but not reaped yet, is gone.)
	for _, pid := range children {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err == nil && !strings.Contains(string(stat), ") Z ") {
			t.Errorf("process %d of the killed server still runs: %s", pid, stat)
		}
	}
	if _, err := p.Psql("select 1"); err == nil {
		t.Fatal("a killed server answered")
	}
	if strings.Contains(p.Logs(), "database system is shut down") {
		t.Fatal("Kill shut the server down cleanly; it must crash it")
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if p.Port != port {
		t.Fatalf("restarted on port %d, want %d", p.Port, port)
	}
	out, err := p.Psql("select v from t")
	if err != nil || out != "7" {
		t.Fatalf("after Kill and Start: %q %v\n%s", out, err, p.Logs())
	}
	if !strings.Contains(p.Logs(), "not properly shut down") {
		t.Errorf("the restart did not recover from a crash:\n%s", LastLines(p.Logs(), 20))
	}
}

func TestCaddy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds Caddy")
	}
	t.Parallel()
	c := NewCaddy(t, CaddyBinary(t, ""))
	port := FreePort(t)
	write := func(body string) {
		t.Helper()
		err := c.WriteConfig(fmt.Sprintf("{\n\tadmin %s\n\tauto_https off\n\tpersist_config off\n\tstorage file_system %s/storage\n}\n\nhttp://127.0.0.1:%d {\n\trespond %q\n}\n",
			c.AdminAddr(), c.Dir, port, body))
		if err != nil {
			t.Fatal(err)
		}
	}
	get := func(want string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if got := string(b); got != want {
			t.Fatalf("GET / = %s %q, want %q", resp.Status, got, want)
		}
	}
	write("one")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	get("one")
	write("two")
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	get("two")
	if err := c.Restart(true); err != nil {
		t.Fatal(err)
	}
	get("two")

	// The same Caddy on a JSON config.
	c.ConfigPath, c.Adapter = filepath.Join(c.Dir, "caddy.json"), ""
	err := c.WriteConfig(fmt.Sprintf(`{"admin": {"listen": %q}, "apps": {"http": {"servers": {"s": {
		"listen": ["127.0.0.1:%d"], "automatic_https": {"disable": true},
		"routes": [{"handle": [{"handler": "static_response", "body": "three"}]}]}}}}}`, c.AdminAddr(), port))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Reload(); err != nil {
		t.Fatal(err)
	}
	get("three")
	if err := c.Restart(false); err != nil {
		t.Fatal(err)
	}
	get("three")
}
