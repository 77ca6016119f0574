package integration

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteBackFromOtherHandlers: X-Session-* response headers set by other
// handlers (header before file_server, which writes through ReadFrom, or
// respond) are applied and never reach the client.
func TestWriteBackFromOtherHandlers(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	content := bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16)
	if err := os.MkdirAll(filepath.Join(root, "static"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "static", "big.txt"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	c := StartCaddy(t, CaddyOpts{
		Session: "\tsecret " + secretA + "\n\tclient_readable *",
		Site: `session {
{{SESSION}}
}
handle /static/* {
	header X-Session-Rotate 1
	root * ` + root + `
	file_server
}
handle /bye {
	header X-Session-Destroy 1
	respond "bye" 200
}
reverse_proxy {{UPSTREAM}}`})
	b := c.NewBrowser()
	b.Seed(t, `{"customerId":"c_1"}`)
	old := b.Jar.Get("__session")

	r := b.Get(t, "/static/big.txt")
	if r.Status != http.StatusOK || !bytes.Equal(r.Body, content) {
		t.Fatalf("file_server: status %d, %d bytes", r.Status, len(r.Body))
	}
	noSessionResponseHeaders(t, r)
	if b.Jar.Get("__session") == old || len(setCookieFor(r, "__session")) != 1 {
		t.Errorf("X-Session-Rotate set before file_server was not applied: Set-Cookie %q", r.SetCookies())
	}
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"customerId":"c_1"}`)

	r = b.Get(t, "/bye")
	if r.Status != http.StatusOK || string(r.Body) != "bye" {
		t.Fatalf("respond:\n%s", r)
	}
	noSessionResponseHeaders(t, r)
	if lines := setCookieFor(r, "__session"); len(lines) != 1 || !isExpiry(t, lines[0]) {
		t.Errorf("X-Session-Destroy set before respond was not applied: Set-Cookie %q", r.SetCookies())
	}
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{}`)
}

// TestWriteBackWithEncode: compression between the module and the upstream
// does not hide the upstream's session headers.
func TestWriteBackWithEncode(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{
		Session: "\tsecret " + secretA + "\n\tclient_readable *",
		Site: `session {
{{SESSION}}
}
encode gzip
reverse_proxy {{UPSTREAM}}`})
	b := c.NewBrowser()
	r := b.Get(t, "/page", "Accept-Encoding: gzip", `X-Test-Resp: X-Session-Set: {"zipped":true}`, "X-Test-Body-Size: 100000")
	if r.Status != http.StatusOK {
		t.Fatalf("status %d", r.Status)
	}
	if r.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("harness: response not compressed (Content-Encoding %q)", r.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(r.Body))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(zr)
	if err != nil || strings.Count(string(body), "x") != 100000 {
		t.Fatalf("compressed body damaged: %v, %d bytes", err, len(body))
	}
	noSessionResponseHeaders(t, r)
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"zipped":true}`)
}

// TestUpstreamDown: with the upstream unreachable, a request with a session
// gets Caddy's 502, not a module error, and the API still answers.
func TestUpstreamDown(t *testing.T) {
	t.Parallel()
	dead := freePort(t)
	c := StartCaddy(t, CaddyOpts{
		Session: "\tsecret " + secretA + "\n\tclient_writable theme",
		Site: fmt.Sprintf(`session {
{{SESSION}}
}
reverse_proxy 127.0.0.1:%d`, dead)})
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
	r := b.Get(t, "/page", "X-Session-Theme: spoof")
	if r.Status != http.StatusBadGateway {
		t.Errorf("upstream down: status %d, want 502:\n%s", r.Status, r)
	}
	noSessionResponseHeaders(t, r)
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"theme":"dark"}`)
}
