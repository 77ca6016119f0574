package integration

import (
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// serverStores returns the session-block line for each server store; the
// file store's directory does not exist yet (the store creates it).
func serverStores(t *testing.T) map[string]string {
	return map[string]string{
		"memory": "store memory",
		"file":   "store file " + filepath.Join(t.TempDir(), "sessions"),
	}
}

// regularFiles lists the regular files under dir with their modes.
func regularFiles(dir string) map[string]fs.FileMode {
	out := map[string]fs.FileMode{}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil && info.Mode().IsRegular() {
			out[p] = info.Mode()
		}
		return nil
	})
	return out
}

func TestServerStoreBasics(t *testing.T) {
	t.Parallel()
	for name, store := range serverStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme big\n\t" + store})
			dir := strings.TrimPrefix(store, "store file ")
			b := c.NewBrowser()
			big := randomString(3000)

			r := b.API(t, "POST", `{"theme":"dark","big":"`+big+`"}`)
			wantObject(t, r, http.StatusOK, `{"theme":"dark","big":"`+big+`"}`)
			if names := b.Jar.Names(); len(names) != 1 || names[0] != "__session" || len(b.Jar.Get("__session")) > 600 {
				t.Fatalf("a server store's cookie holds only the ID; got cookies %v (%d bytes)", names, len(b.Jar.Get("__session")))
			}
			old := b.Jar.Header()
			wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"theme":"dark","big":"`+big+`"}`)
			b.Get(t, "/page")
			wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Theme": "dark", "X-Session-Big": big})

			var files map[string]fs.FileMode
			if name == "file" {
				files = regularFiles(dir)
				if len(files) == 0 {
					t.Fatalf("no session file under %s", dir)
				}
				if info, err := os.Stat(dir); err != nil || info.Mode().Perm() != 0o700 {
					t.Errorf("store dir %s: mode %v, want 0700 (%v)", dir, info.Mode().Perm(), err)
				}
				v := b.Jar.Get("__session")
				for p, m := range files {
					if m.Perm()&0o077 != 0 {
						t.Errorf("session file %s has mode %v, want 0600", p, m.Perm())
					}
					content, _ := os.ReadFile(p)
					if strings.Contains(p, v[:20]) || strings.Contains(string(content), v[:20]) {
						t.Errorf("session file %s holds the cookie value", p)
					}
				}
				// Reads without a session or with a forged one create nothing.
				c.Do(t, Req{Path: "/page"})
				c.Do(t, Req{Path: "/__session", Cookie: "__session=forged"})
				c.Do(t, Req{Path: "/page", Cookie: "__session=" + v[:len(v)-3] + "abc"})
				if n := len(regularFiles(dir)); n != len(files) {
					t.Errorf("reads without a valid session changed the store: %d files, then %d", len(files), n)
				}
			}

			// DELETE: the store record goes, the old cookie is no session.
			r = b.API(t, "DELETE", "")
			if r.Status != http.StatusNoContent {
				t.Fatalf("DELETE:\n%s", r)
			}
			wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: old}), http.StatusOK, `{}`)
			c.Do(t, Req{Path: "/page", Cookie: old})
			noSessionHeaders(t, c.Up.Last(t))
			if name == "file" {
				if n := len(regularFiles(dir)); n >= len(files) {
					t.Errorf("DELETE left the session file: %d files before, %d after", len(files), n)
				}
			}

			// A write with the replayed cookie starts a fresh ID: the old
			// cookie is never adopted.
			r = c.Do(t, Req{Method: "POST", Path: "/__session", Body: `{"theme":"new"}`, CT: "application/json", Cookie: old})
			wantObject(t, r, http.StatusOK, `{"theme":"new"}`)
			lines := setCookieFor(r, "__session")
			if len(lines) != 1 || "__session="+parseSetCookie(t, lines[0]).Value == old {
				t.Fatalf("a write with a deleted session's cookie must issue a fresh ID; Set-Cookie %q", r.SetCookies())
			}
			wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: old}), http.StatusOK, `{}`)
		})
	}
}

func TestServerStoreRotate(t *testing.T) {
	t.Parallel()
	for name, store := range serverStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_readable *\n\t" + store})
			b := c.NewBrowser()
			b.Seed(t, `{"customerId":"c_1"}`)
			old := b.Jar.Header()

			r := b.Get(t, "/login", "X-Test-Resp: X-Session-Rotate: 1", `X-Test-Resp: X-Session-Set: {"role":"admin"}`)
			if b.Jar.Header() == old || len(setCookieFor(r, "__session")) != 1 {
				t.Fatalf("rotation issued no new cookie: %q", r.SetCookies())
			}
			wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"customerId":"c_1","role":"admin"}`)
			b.Get(t, "/page")
			wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Customerid": "c_1", "X-Session-Role": "admin"})

			// The old ID is invalid at once.
			wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: old}), http.StatusOK, `{}`)
			c.Do(t, Req{Path: "/page", Cookie: old})
			noSessionHeaders(t, c.Up.Last(t))
		})
	}
}

func TestServerStoreConcurrentWrites(t *testing.T) {
	t.Parallel()
	var keys []string
	for i := range 20 {
		keys = append(keys, fmt.Sprintf("k%d", i))
	}
	for name, store := range serverStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable base " + strings.Join(keys, " ") + "\n\tclient_readable *\n\t" + store})
			b := c.NewBrowser()
			wantObject(t, b.API(t, "POST", `{"base":true}`), http.StatusOK, `{"base":true}`)
			cookie := b.Jar.Header()

			var wg sync.WaitGroup
			errs := make(chan string, 2*len(keys))
			for i := range keys {
				// The upstream writes u<i> at the same time.
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := c.DoErr(Req{Path: "/w", Cookie: cookie, Header: []string{fmt.Sprintf(`X-Test-Resp: X-Session-Set: {"u%d":%d}`, i, i)}})
					if err != nil {
						errs <- err.Error()
					} else if r.Status != http.StatusOK {
						errs <- fmt.Sprintf("upstream write u%d: %d", i, r.Status)
					}
				}()
			}
			for i, k := range keys {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := c.DoErr(Req{Method: "POST", Path: "/__session", Body: fmt.Sprintf(`{"%s":%d}`, k, i), CT: "application/json", Cookie: cookie})
					if err != nil {
						errs <- err.Error()
					} else if r.Status != http.StatusOK {
						errs <- fmt.Sprintf("POST %s: %d %s", k, r.Status, r.Body)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Error(e)
			}
			got := jsonObject(t, c.Do(t, Req{Path: "/__session", Cookie: cookie}))
			for i, k := range keys {
				if got[k] != float64(i) {
					t.Errorf("lost update: %s = %v", k, got[k])
				}
				if u := fmt.Sprintf("u%d", i); got[u] != float64(i) {
					t.Errorf("lost upstream update: %s = %v", u, got[u])
				}
			}
			if got["base"] != true {
				t.Errorf("lost update: base = %v", got["base"])
			}
		})
	}
}

func TestServerStoreMaxSize(t *testing.T) {
	t.Parallel()
	for name, store := range serverStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme big\n\tmax_size 1KiB\n\t" + store})
			b := c.NewBrowser()
			wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
			r := b.API(t, "PATCH", `{"big":"`+randomString(2000)+`"}`)
			wantError(t, r, http.StatusRequestEntityTooLarge)
			wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"theme":"dark"}`)
			// Upstream writes are bounded too: ignored, the response goes out.
			r = b.Get(t, "/x", `X-Test-Resp: X-Session-Set: {"big":"`+randomString(2000)+`"}`)
			if r.Status != http.StatusOK {
				t.Fatalf("oversize upstream write broke the response:\n%s", r)
			}
			wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"theme":"dark"}`)
		})
	}
}

func TestMemoryStoreSurvivesReload(t *testing.T) {
	t.Parallel()
	cfg := func(extra string) CaddyOpts {
		return CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme\n\tstore memory" + extra}
	}
	c := StartCaddy(t, cfg(""))
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)

	c.Reload(t, cfg("\n\tidle_timeout 1h"))
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"theme":"dark"}`)
	c.Reload(t, cfg("\n\tforward theme"))
	b.Get(t, "/page")
	wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Theme": "dark"})

	// Lost on restart (documented): proves the data lived in the process.
	c.Restart(t)
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{}`)
}

func TestFileStoreSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "sessions")
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme\n\tstore file " + dir})
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)

	c.KillRestart(t)
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"theme":"dark"}`)
	wantObject(t, b.API(t, "PATCH", `{"theme":"light"}`), http.StatusOK, `{"theme":"light"}`)
	c.Restart(t)
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"theme":"light"}`)
	b.Get(t, "/page")
	wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Theme": "light"})
}

// TestFileStoreUnavailable: when the store fails, reads and writes do not
// hang, the cookie is left alone, on_store_error decides (S30).
func TestFileStoreUnavailable(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{"fail_open", "fail_closed"} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "sessions")
			c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme\n\tstore file " + dir + "\n\ton_store_error " + policy})
			b := c.NewBrowser()
			wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
			cookie := b.Jar.Header()

			// Break the store: its directory becomes a file.
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dir, []byte("not a directory"), 0o600); err != nil {
				t.Fatal(err)
			}

			r := c.Do(t, Req{Method: "POST", Path: "/__session", Body: `{"theme":"x"}`, CT: "application/json", Cookie: cookie})
			wantError(t, r, http.StatusServiceUnavailable)
			noSetCookie(t, r)
			r = c.Do(t, Req{Path: "/__session", Cookie: cookie})
			wantError(t, r, http.StatusServiceUnavailable)
			noSetCookie(t, r)

			before := c.Up.Count()
			r = c.Do(t, Req{Path: "/page", Cookie: cookie, Header: []string{"X-Session-Theme: spoof"}})
			noSetCookie(t, r)
			if policy == "fail_open" {
				wantUpstreamBody(t, r, "/page")
				noSessionHeaders(t, c.Up.Last(t))
			} else {
				if r.Status != http.StatusServiceUnavailable || c.Up.Count() != before {
					t.Fatalf("fail_closed: want 503 and nothing upstream, got:\n%s", r)
				}
			}
			// No cookie: no store needed, both policies serve.
			r = c.Do(t, Req{Path: "/page"})
			wantUpstreamBody(t, r, "/page")

			// Recovery is automatic.
			if err := os.Remove(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			r = c.Do(t, Req{Method: "POST", Path: "/__session", Body: `{"theme":"back"}`, CT: "application/json", Cookie: cookie})
			wantObject(t, r, http.StatusOK, `{"theme":"back"}`)
		})
	}
}

// TestMemoryStoreLRU: max_sessions bounds the pool, evicting the least
// recently used session.
func TestMemoryStoreLRU(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable n\n\tstore memory {\n\t\tmax_sessions 2\n\t}"})
	var bs []*Browser
	for i := range 3 {
		b := c.NewBrowser()
		wantObject(t, b.API(t, "POST", fmt.Sprintf(`{"n":%d}`, i)), http.StatusOK, fmt.Sprintf(`{"n":%d}`, i))
		bs = append(bs, b)
		if i == 1 {
			// Use session 0 so that session 1 is the least recently used.
			wantObject(t, bs[0].API(t, "GET", ""), http.StatusOK, `{"n":0}`)
		}
	}
	wantObject(t, bs[1].API(t, "GET", ""), http.StatusOK, `{}`)
	wantObject(t, bs[0].API(t, "GET", ""), http.StatusOK, `{"n":0}`)
	wantObject(t, bs[2].API(t, "GET", ""), http.StatusOK, `{"n":2}`)
}

// TestMemoryStoreNamedPools: handlers naming one pool share its sessions;
// another name is another pool.
func TestMemoryStoreNamedPools(t *testing.T) {
	t.Parallel()
	handler := func(prefix, pool string) string {
		return `handle ` + prefix + `/* {
	session {
		secret ` + secretA + `
		client_writable theme
		api_path ` + prefix + `/__session
		store memory {
			name ` + pool + `
		}
	}
	reverse_proxy {{UPSTREAM}}
}
`
	}
	c := StartCaddy(t, CaddyOpts{Site: handler("/a", "shop") + handler("/b", "shop") + handler("/c", "other")})
	b := c.NewBrowser()
	r := b.Do(t, Req{Method: "POST", Path: "/a/__session", Body: `{"theme":"dark"}`, CT: "application/json"})
	wantObject(t, r, http.StatusOK, `{"theme":"dark"}`)
	wantObject(t, b.Do(t, Req{Path: "/b/__session"}), http.StatusOK, `{"theme":"dark"}`)
	wantObject(t, b.Do(t, Req{Path: "/c/__session", Cookie: b.Jar.Header()}), http.StatusOK, `{}`)
}

// TestFileStoreCorruptFile: a corrupted session file is no session, never
// an error page.
func TestFileStoreCorruptFile(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "sessions")
	c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme\n\tstore file " + dir})
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
	files := regularFiles(dir)
	if len(files) == 0 {
		t.Fatalf("no session file under %s", dir)
	}
	for p := range files {
		if err := os.WriteFile(p, []byte("{\x00garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := b.API(t, "GET", "")
	if r.Status != http.StatusOK && r.Status != http.StatusServiceUnavailable {
		t.Fatalf("corrupted file: status %d:\n%s", r.Status, r)
	}
	r = b.Get(t, "/page")
	wantUpstreamBody(t, r, "/page")
	noSessionHeaders(t, c.Up.Last(t))
}

// TestServerStoreNoResurrection: a request in flight with the old cookie
// when DELETE or rotation completes does not bring the old session back
// when it finishes, by a touch or by an upstream write (S34).
func TestServerStoreNoResurrection(t *testing.T) {
	t.Parallel()
	for name, store := range serverStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := StartCaddy(t, CaddyOpts{Session: "\tsecret " + secretA + "\n\tclient_writable theme\n\tclient_readable *\n\tidle_timeout 2s\n\t" + store})
			var mu sync.Mutex
			var release chan struct{}
			c.Up.Handle("/slow", func(*Recorded, http.Header) int {
				mu.Lock()
				ch := release
				mu.Unlock()
				<-ch
				return 0
			})
			for _, tc := range []struct {
				name   string
				header []string
				end    func(b *Browser) // ends the old session meanwhile
			}{
				{"delete, touch", nil, func(b *Browser) {
					if r := b.API(t, "DELETE", ""); r.Status != http.StatusNoContent {
						t.Fatalf("DELETE:\n%s", r)
					}
				}},
				{"delete, upstream write", []string{`X-Test-Resp: X-Session-Set: {"late":1}`}, func(b *Browser) {
					if r := b.API(t, "DELETE", ""); r.Status != http.StatusNoContent {
						t.Fatalf("DELETE:\n%s", r)
					}
				}},
				{"rotate, upstream write", []string{`X-Test-Resp: X-Session-Set: {"late":1}`}, func(b *Browser) {
					b.Get(t, "/rotate", "X-Test-Resp: X-Session-Rotate: 1")
					wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"theme":"dark"}`)
				}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					mu.Lock()
					release = make(chan struct{})
					mu.Unlock()
					b := c.NewBrowser()
					wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
					old := b.Jar.Header()
					before := c.Up.Count()
					done := make(chan *Resp, 1)
					go func() {
						r, err := c.DoErr(Req{Path: "/slow", Cookie: old, Header: tc.header})
						if err != nil {
							r = &Resp{Status: -1, Body: []byte(err.Error())}
						}
						done <- r
					}()
					for c.Up.Count() == before {
						time.Sleep(10 * time.Millisecond)
					}
					time.Sleep(1100 * time.Millisecond) // past half the idle timeout: a touch is due
					tc.end(b)
					mu.Lock()
					close(release)
					mu.Unlock()
					if r := <-done; r.Status != http.StatusOK {
						t.Fatalf("slow request: %d %s", r.Status, r.Body)
					}
					wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: old}), http.StatusOK, `{}`)
					c.Do(t, Req{Path: "/page", Cookie: old})
					noSessionHeaders(t, c.Up.Last(t))
				})
			}
		})
	}
}
