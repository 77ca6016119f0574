package integration

import (
	"bytes"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func secretsCfg(secrets, store string) CaddyOpts {
	return CaddyOpts{Session: "\tsecret " + secrets + "\n\tclient_writable theme" + store}
}

func TestSecretRotation(t *testing.T) {
	t.Parallel()
	for name, store := range map[string]string{
		"cookie": "",
		"memory": "\n\tstore memory",
		"file":   "\n\tstore file " + filepath.Join(t.TempDir(), "sessions"),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testSecretRotation(t, store)
		})
	}
}

func testSecretRotation(t *testing.T, store string) {
	c := StartCaddy(t, secretsCfg(secretA, store))
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
	cookieA := b.Jar.Header()

	// [B, A]: the A cookie still works and is re-issued under B, on an API
	// read and on a proxied request.
	c.Reload(t, secretsCfg(secretB+" "+secretA, store))
	r := c.Do(t, Req{Path: "/__session", Cookie: cookieA})
	wantObject(t, r, http.StatusOK, `{"theme":"dark"}`)
	lines := setCookieFor(r, "__session")
	if len(lines) != 1 || isExpiry(t, lines[0]) || parseSetCookie(t, lines[0]).Value == b.Jar.Get("__session") {
		t.Fatalf("a cookie only an older secret verifies must be re-issued; Set-Cookie %q", r.SetCookies())
	}
	r = c.Do(t, Req{Path: "/page", Cookie: cookieA})
	wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Theme": "dark"})
	if len(setCookieFor(r, "__session")) != 1 {
		t.Errorf("proxied response did not re-issue the old cookie: %q", r.SetCookies())
	}
	jarB := NewJar()
	jarB.Update(t, r)
	cookieB := jarB.Header()

	// [B]: the re-issued cookie works, the A cookie is no session.
	c.Reload(t, secretsCfg(secretB, store))
	wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: cookieB}), http.StatusOK, `{"theme":"dark"}`)
	r = c.Do(t, Req{Path: "/__session", Cookie: cookieA})
	wantObject(t, r, http.StatusOK, `{}`)
	r = c.Do(t, Req{Path: "/page", Cookie: cookieA})
	if r.Status != http.StatusOK {
		t.Fatalf("a cookie of a removed secret must be no session, not an error:\n%s", r)
	}
	noSessionHeaders(t, c.Up.Last(t))

	logs := c.FinalLogs()
	for _, s := range []string{secretA, secretB} {
		if strings.Contains(logs, s) {
			t.Errorf("a secret appears in the logs")
		}
	}
}

func TestSecretFromEnv(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{
		Session: "\tsecret {env.IT_SESSION_SECRET}\n\tclient_writable theme",
		Env:     []string{"IT_SESSION_SECRET=" + secretA},
	})
	b := c.NewBrowser()
	b.API(t, "POST", `{"theme":"dark"}`)
	cookie := b.Jar.Header()

	c.Restart(t, "IT_SESSION_SECRET="+secretB)
	wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: cookie}), http.StatusOK, `{}`)

	c.Restart(t, "IT_SESSION_SECRET="+secretA)
	wantObject(t, c.Do(t, Req{Path: "/__session", Cookie: cookie}), http.StatusOK, `{"theme":"dark"}`)
	if logs := c.FinalLogs(); strings.Contains(logs, secretA) || strings.Contains(logs, secretB) {
		t.Errorf("a secret appears in the logs")
	}
}

// storageFiles lists the regular files under dir that Caddy itself does
// not write (last_clean.json, locks).
func storageFiles(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "last_clean.json" || strings.HasPrefix(rel, "locks"+string(filepath.Separator)) {
			return nil
		}
		b, _ := os.ReadFile(p)
		if bytes.Contains(b, []byte(`"instance_id"`)) {
			return nil // last_clean.json on its way (a temporary file)
		}
		out[rel] = b
		return nil
	})
	return out
}

var tokenRe = regexp.MustCompile(`[A-Za-z0-9+/_=-]{20,}`)

func TestSecretGenerated(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tclient_writable theme"})
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
	// Let Caddy's own storage cleaning finish writing first.
	waitLog(c, 0, regexp.MustCompile(`finished cleaning storage units`))

	files := storageFiles(t, c.StorageDir)
	if len(files) == 0 {
		t.Fatalf("no generated secret in Caddy's storage %s", c.StorageDir)
	}
	if !waitLog(c, 0, regexp.MustCompile(`(?i)"msg":"[^"]*secret`)) {
		t.Errorf("no log line says a secret was generated or loaded")
	}

	c.Restart(t)
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"theme":"dark"}`)
	if got := storageFiles(t, c.StorageDir); len(got) != len(files) {
		t.Errorf("restart changed the stored secrets: %d files, then %d", len(files), len(got))
	}
	for name, content := range files {
		if string(storageFiles(t, c.StorageDir)[name]) != string(content) {
			t.Errorf("restart rewrote %s", name)
		}
	}
	logs := c.FinalLogs()
	found := 0
	for name, content := range files {
		for _, tok := range tokenRe.FindAllString(string(content), -1) {
			found++
			if strings.Contains(logs, tok) {
				t.Errorf("the logs contain a value stored in %s", name)
			}
		}
	}
	if found == 0 {
		t.Errorf("harness: no secret-like text in the stored files %v; the log check proves nothing", files)
	}
}

// TestSecretGeneratedShared: two instances starting together on one
// storage agree on one secret.
func TestSecretGeneratedShared(t *testing.T) {
	t.Parallel()
	storage := filepath.Join(t.TempDir(), "shared")
	o := CaddyOpts{Session: "\tclient_writable theme", StorageDir: storage}
	cs := StartCaddies(t, o, o)
	b := cs[0].NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"one"}`), http.StatusOK, `{"theme":"one"}`)
	b.C = cs[1]
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"theme":"one"}`)
	wantObject(t, b.API(t, "PATCH", `{"theme":"two"}`), http.StatusOK, `{"theme":"two"}`)
	b.C = cs[0]
	wantObject(t, b.API(t, "GET", ""), http.StatusOK, `{"theme":"two"}`)
}

// writeCaddyfile writes a full Caddyfile with the given session block body
// in a new directory and returns its path.
func writeCaddyfile(t *testing.T, session string) (path, storage string) {
	t.Helper()
	dir := t.TempDir()
	storage = filepath.Join(dir, "storage")
	src := renderCaddyfile(CaddyOpts{Session: session}, 8080, 2999, storage, "127.0.0.1:9")
	path = filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, storage
}

// validateCaddyfile runs `caddy <cmd>` on a Caddyfile with the given
// session block body and returns its output and Caddy's storage dir.
func validateCaddyfile(t *testing.T, cmd, session string, env []string) (out, storage string, err error) {
	t.Helper()
	path, storage := writeCaddyfile(t, session)
	out, err = runCaddy(t, filepath.Dir(path), env, cmd, "--config", path, "--adapter", "caddyfile")
	return out, storage, err
}

// mentionsPosition reports whether out names secret position n.
func mentionsPosition(out string, n string) bool {
	ord := map[string]string{"1": "first", "2": "second", "3": "third"}[n]
	re := regexp.MustCompile(`(?i)secret[^\n]{0,60}\b(` + n + `|` + ord + `)\b|\b(` + n + `|` + ord + `)(st|nd|rd|th)?\b[^\n]{0,30}secret`)
	return re.MatchString(out)
}

func TestValidateSecrets(t *testing.T) {
	t.Parallel()
	const short = "tooShortXYZ123"
	for _, tc := range []struct {
		name, secrets string
		env           []string
		position      string
		hidden        []string
	}{
		{"short first", short, nil, "1", []string{short}},
		{"short second", secretA + " " + short, nil, "2", []string{short, secretA}},
		{"duplicate", secretA + " " + secretB + " " + secretA, nil, "3", []string{secretA, secretB}},
		{"short from env", "{env.IT_SHORT}", []string{"IT_SHORT=" + short}, "1", []string{short}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, _, err := validateCaddyfile(t, "validate", "\tsecret "+tc.secrets, tc.env)
			if err == nil {
				t.Fatalf("caddy validate accepted secret %s:\n%s", tc.name, out)
			}
			for _, h := range tc.hidden {
				if strings.Contains(out, h) {
					t.Errorf("the error shows a secret's value:\n%s", out)
				}
			}
			if !mentionsPosition(out, tc.position) {
				t.Errorf("the error does not name secret position %s:\n%s", tc.position, out)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		out, _, err := validateCaddyfile(t, "validate", "\tsecret "+secretA+" "+secretB, nil)
		if err != nil {
			t.Fatalf("caddy validate refused two good secrets: %v\n%s", err, out)
		}
	})
}

// TestValidateWritesNoSecret: `caddy validate` (and adapt) never create the
// generated secret.
func TestValidateWritesNoSecret(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"validate", "adapt"} {
		out, storage, err := validateCaddyfile(t, cmd, "\tclient_writable theme", nil)
		if err != nil {
			t.Fatalf("caddy %s: %v\n%s", cmd, err, out)
		}
		if files := storageFiles(t, storage); len(files) != 0 {
			names := make([]string, 0, len(files))
			for n := range files {
				names = append(names, n)
			}
			t.Errorf("caddy %s wrote to storage: %v", cmd, names)
		}
	}
}

// TestNoValuesInLogs: with debug logging on, the module's log lines carry
// no secret, cookie value or session value (S38).
func TestNoValuesInLogs(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Global: "\tdebug", Session: "\tsecret " + secretA + "\n\tclient_writable theme\n\tclient_readable *"})
	b := c.NewBrowser()
	var cookies []string
	note := func(r *Resp) {
		for _, line := range r.SetCookies() {
			if v := parseSetCookie(t, line).Value; len(v) > 20 {
				cookies = append(cookies, v[:20])
			}
		}
	}
	note(b.API(t, "POST", `{"theme":"sekret-theme-value"}`))
	note(b.Get(t, "/login", `X-Test-Resp: X-Session-Set: {"customerId":"c_sekret_42"}`))
	note(b.Get(t, "/rotate", "X-Test-Resp: X-Session-Rotate: 1"))
	v := b.Jar.Get("__session")
	c.Do(t, Req{Path: "/page", Cookie: "__session=" + v[:len(v)/2] + "x" + v[len(v)/2+1:]})
	note(b.Get(t, "/page"))
	note(b.API(t, "DELETE", ""))

	var moduleLines []string
	for _, line := range strings.Split(c.FinalLogs(), "\n") {
		if strings.Contains(line, `"logger":"http.handlers.session`) || strings.Contains(line, "session") && !strings.Contains(line, `"logger":"http.handlers.reverse_proxy`) && !strings.Contains(line, `"logger":"http.log.access`) {
			moduleLines = append(moduleLines, line)
		}
	}
	if len(moduleLines) == 0 {
		t.Fatalf("no log line from the session module at debug level")
	}
	for _, line := range moduleLines {
		for _, bad := range append([]string{secretA, "sekret", v[:20]}, cookies...) {
			if strings.Contains(line, bad) {
				t.Errorf("log line carries %q: %s", bad, line)
			}
		}
	}
}
