package integration

import (
	"net/http"
	"os"
	"strings"
	"testing"
)

// sessionLines returns the Set-Cookie lines of r for the session cookie
// name and its chunks.
func sessionLines(r *Resp, name string) []string {
	var out []string
	for _, line := range r.SetCookies() {
		n, _, _ := strings.Cut(line, "=")
		n = strings.TrimSpace(n)
		if n == name || strings.HasPrefix(n, name+".") {
			out = append(out, line)
		}
	}
	return out
}

// wantPartitionedHigh checks that every line is Secure, Partitioned and
// Priority=High, under 4096 bytes, and that there are want of them.
func wantPartitionedHigh(t *testing.T, what string, lines []string, want int) {
	t.Helper()
	if len(lines) != want {
		t.Fatalf("%s: %d session Set-Cookie lines, want %d: %q", what, len(lines), want, lines)
	}
	for _, line := range lines {
		a := attrs(line)
		_, secure := a["secure"]
		_, part := a["partitioned"]
		if !secure || !part || a["priority"] != "High" || len(line) >= 4096 {
			t.Errorf("%s: line of %d bytes lacks Secure, Partitioned or Priority=High: %.80q … %q", what, len(line), line, line[max(0, len(line)-120):])
		}
	}
}

// TestCookiePartitionedPriority: partitioned and priority go on every
// Set-Cookie the module writes, over plain HTTP too (partitioned forces
// Secure): each chunk of a cookie-store session, the expiry of leftover
// chunks, and the expiries of a DELETE; and on a server store's cookie.
func TestCookiePartitionedPriority(t *testing.T) {
	t.Parallel()
	const cfg = "\tsecret " + secretA + "\n\tclient_writable big\n\tcookie {\n\t\tpartitioned\n\t\tpriority HIGH\n\t}\n"

	t.Run("cookie store", func(t *testing.T) {
		t.Parallel()
		c := StartCaddy(t, CaddyOpts{Session: cfg})
		b := c.NewBrowser()
		big := randomString(3500)
		r := b.API(t, "POST", `{"big":"`+big+`"}`)
		wantObject(t, r, http.StatusOK, `{"big":"`+big+`"}`)
		lines := sessionLines(r, "__session")
		if len(lines) < 2 {
			t.Fatalf("want a chunked cookie, got %q", lines)
		}
		wantPartitionedHigh(t, "chunked write", lines, len(lines))
		chunks := len(lines)

		// A smaller session: one cookie, and the leftover chunks expired.
		r = b.API(t, "POST", `{"big":"x"}`)
		wantObject(t, r, http.StatusOK, `{"big":"x"}`)
		lines = sessionLines(r, "__session")
		wantPartitionedHigh(t, "shrinking write", lines, chunks)
		expired := 0
		for _, l := range lines {
			if isExpiry(t, l) {
				expired++
			}
		}
		if expired != chunks-1 {
			t.Errorf("shrinking write: %d chunks expired, want %d: %q", expired, chunks-1, lines)
		}
		wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"big":"x"}`)

		r = b.API(t, "DELETE", "")
		lines = sessionLines(r, "__session")
		wantPartitionedHigh(t, "DELETE", lines, 1)
		if !isExpiry(t, lines[0]) {
			t.Errorf("DELETE did not expire the cookie: %q", lines[0])
		}
	})

	t.Run("memory store", func(t *testing.T) {
		t.Parallel()
		c := StartCaddy(t, CaddyOpts{Session: cfg + "\tstore memory"})
		b := c.NewBrowser()
		r := b.Seed(t, `{"customerId":"c_1"}`)
		wantPartitionedHigh(t, "write-back", sessionLines(r, "__session"), 1)
		r = b.Get(t, "/logout", "X-Test-Resp: X-Session-Destroy: 1")
		lines := sessionLines(r, "__session")
		wantPartitionedHigh(t, "destroy", lines, 1)
		if !isExpiry(t, lines[0]) {
			t.Errorf("destroy did not expire the cookie: %q", lines[0])
		}
	})
}

// TestCookiePartitionedSecureOff: `partitioned` with `secure off` does not
// load: caddy adapt names the file and line.
func TestCookiePartitionedSecureOff(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := dir + "/Caddyfile"
	src := ":8080 {\n\tsession {\n\t\tsecret " + secretA + "\n\t\tcookie {\n\t\t\tpartitioned\n\t\t\tsecure off\n\t\t}\n\t}\n}\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCaddy(t, dir, nil, "adapt", "--config", path, "--adapter", "caddyfile")
	if err == nil {
		t.Fatalf("caddy adapt accepted partitioned with secure off:\n%s", out)
	}
	if !strings.Contains(out, "Caddyfile:6") || !strings.Contains(out, "Partitioned") {
		t.Fatalf("caddy adapt's error does not name line 6 and Partitioned:\n%s", out)
	}
}
