package ops

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddy-session/caddy-session/cookie"
	"github.com/caddy-session/caddy-session/internal/testkit"
)

// `caddy session secret` prints 48 random bytes in base64, fresh each time,
// and a Caddy runs with it as its secret.
func TestCLISecret(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var secrets []string
	for range 2 {
		out, err := runCaddy(t, dir, "session", "secret")
		if err != nil {
			t.Fatalf("caddy session secret: %v", err)
		}
		s := strings.TrimSpace(out)
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != 48 || out != s+"\n" {
			t.Fatalf("caddy session secret printed %q: want 48 bytes in base64 on one line", out)
		}
		secrets = append(secrets, s)
	}
	if secrets[0] == secrets[1] {
		t.Fatal("two secrets are equal")
	}
	c := StartCaddy(t, "", fmt.Sprintf("session {\n\tsecret %q\n\tclient_writable cart\n}\nreverse_proxy {{UPSTREAM}}", secrets[0]))
	b := c.NewBrowser()
	if r := b.Do(t, "POST", "/__session", `{"cart":[1]}`); r.Status != 200 || b.Cookie == "" {
		t.Fatalf("a session under the generated secret: %d %s", r.Status, r.Body)
	}
}

// decoded is what `caddy session decode` prints.
type decodedSession struct {
	Handler string                     `json:"handler"`
	Store   string                     `json:"store"`
	Session string                     `json:"session"`
	Values  map[string]json.RawMessage `json:"values"`
	Note    string                     `json:"note"`
}

// decode runs `caddy session decode` on c's config.
func decode(t *testing.T, c *Caddy, value string, extra ...string) (*decodedSession, string, error) {
	t.Helper()
	// Sessions are bound to the host that issued them: the test's Caddy
	// is reached as 127.0.0.1.
	args := append([]string{"session", "decode", "--config", c.Config, "--audience", "127.0.0.1"}, extra...)
	out, err := c.Run(t, append(args, value)...)
	if err != nil {
		return nil, out, err
	}
	d := new(decodedSession)
	if err := json.Unmarshal([]byte(out), d); err != nil {
		t.Fatalf("caddy session decode printed something else than a session: %v\n%s", err, out)
	}
	return d, out, nil
}

// sessionID opens a cookie with the test's secret, as the handler does,
// to check that the CLI never prints what is inside.
func sessionID(t *testing.T, value string, cookieStore bool) string {
	t.Helper()
	codec, err := cookie.NewCodec([][]byte{[]byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	if cookieStore {
		var p struct {
			ID string `json:"i"`
		}
		if _, err := codec.Decode("__session", "127.0.0.1", value, &p); err != nil || p.ID == "" {
			t.Fatalf("decoding the test's cookie: %v", err)
		}
		return p.ID
	}
	var id string
	if _, err := codec.Decode("__session", "127.0.0.1", value, &id); err != nil || id == "" {
		t.Fatalf("decoding the test's cookie: %v", err)
	}
	return id
}

// checkDecoded checks a decoded session: the customer, the session's
// short keyed hash, and no session ID anywhere in the output.
func checkDecoded(t *testing.T, d *decodedSession, out, value string, cookieStore bool, wantCustomer string) {
	t.Helper()
	id := sessionID(t, value, cookieStore)
	codec, _ := cookie.NewCodec([][]byte{[]byte(secret)})
	if d.Session != codec.Ref(id) {
		t.Fatalf("session %q, want the keyed hash %q", d.Session, codec.Ref(id))
	}
	if strings.Contains(out, id) || strings.Contains(out, value) {
		t.Fatalf("the output holds the session ID or the cookie:\n%s", out)
	}
	if wantCustomer == "" {
		if d.Values != nil || d.Note == "" {
			t.Fatalf("want no values and a note saying why:\n%s", out)
		}
		return
	}
	if got := string(d.Values["customerId"]); got != `"`+wantCustomer+`"` {
		t.Fatalf("customerId %s, want %q:\n%s", got, wantCustomer, out)
	}
}

// `caddy session decode` for each store, with its store reachable and
// not.
func TestCLIDecode(t *testing.T) {
	t.Parallel()
	redisAddr := ""
	if _, err := exec.LookPath("redis-server"); err == nil {
		redisAddr = startRedis(t)
	}
	for _, tc := range []struct {
		name, store string
		cookieStore bool
	}{
		{"cookie", "cookie", true},
		{"memory", "memory", false},
		{"file", "file {{DIR}}", false},
		{"redis", "redis redis://{{REDIS}}/0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.name == "redis" && redisAddr == "" {
				startRedis(t) // skips, or fails under CI, with the reason
			}
			store := strings.ReplaceAll(tc.store, "{{DIR}}", filepath.Join(t.TempDir(), "sessions"))
			store = strings.ReplaceAll(store, "{{REDIS}}", redisAddr)
			site := fmt.Sprintf("session {\n\tsecret %s\n\tstore %s\n}\nreverse_proxy {{UPSTREAM}}", secret, store)
			c := StartCaddy(t, "", site)
			b := c.NewBrowser()
			b.Login(t, "c_cli")

			d, out, err := decode(t, c, b.Cookie)
			if err != nil {
				t.Fatalf("caddy session decode: %v\n%s", err, out)
			}
			if d.Handler != "__session" || !strings.HasPrefix(d.Store, strings.Fields(tc.store)[0]) {
				t.Fatalf("handler %q, store %q:\n%s", d.Handler, d.Store, out)
			}
			checkDecoded(t, d, out, b.Cookie, tc.cookieStore, "c_cli")

			// name=value as a browser's tools copy it, and the adapter named.
			d, out, err = decode(t, c, "__session="+b.Cookie, "--adapter", "caddyfile")
			if err != nil {
				t.Fatalf("caddy session decode of name=value: %v\n%s", err, out)
			}
			checkDecoded(t, d, out, b.Cookie, tc.cookieStore, "c_cli")

			// A value no secret verifies: exit status 1.
			_, out, err = decode(t, c, "bm90IGEgY29va2ll")
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("decode of a forged value: %v, want exit status 1\n%s", err, out)
			}

			// Caddy stopped: the memory store's sessions are out of
			// reach (the CLI prints the hash only); the others read as
			// before.
			c.Stop()
			d, out, err = decode(t, c, b.Cookie)
			if err != nil {
				t.Fatalf("caddy session decode with Caddy stopped: %v\n%s", err, out)
			}
			want := "c_cli"
			if tc.name == "memory" {
				want = ""
				if !regexp.MustCompile(`admin API .* did not answer`).MatchString(d.Note) {
					t.Fatalf("note %q: want the reason", d.Note)
				}
			}
			checkDecoded(t, d, out, b.Cookie, tc.cookieStore, want)
		})
	}
}

// `caddy session decode` without --config reads ./Caddyfile, as caddy run
// does, and prints nothing but the session: no log line on stderr, though
// the config has a literal secret (a warning at provisioning) and Caddy
// logs the file it reads (#16). Errors still go to stderr.
func TestCLIDecodeAdjacentCaddyfile(t *testing.T) {
	t.Parallel()
	site := fmt.Sprintf("session {\n\tsecret %s\n}\nreverse_proxy {{UPSTREAM}}", secret)
	c := StartCaddy(t, "", site)
	b := c.NewBrowser()
	b.Login(t, "c_adjacent")
	if filepath.Base(c.Config) != "Caddyfile" {
		t.Fatalf("the test's config is %s, not a Caddyfile", c.Config)
	}

	run := func(dir string, args ...string) (string, string, error) {
		t.Helper()
		cmd := exec.Command(caddyBin, append([]string{"session", "decode"}, args...)...)
		cmd.Dir, cmd.Env = dir, testkit.CaddyEnv(dir, nil)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	for _, args := range [][]string{
		{"--audience", "127.0.0.1", b.Cookie},
		{"--config", c.Config, "--audience", "127.0.0.1", b.Cookie},
	} {
		out, errOut, err := run(c.Dir, args...)
		if err != nil {
			t.Fatalf("caddy session decode %q: %v\n%s%s", args, err, out, errOut)
		}
		if errOut != "" {
			t.Errorf("caddy session decode %q logged on stderr:\n%s", args, errOut)
		}
		d := new(decodedSession)
		if err := json.Unmarshal([]byte(out), d); err != nil {
			t.Fatalf("caddy session decode %q printed something else than a session: %v\n%s", args, err, out)
		}
		checkDecoded(t, d, out, b.Cookie, true, "c_adjacent")
	}

	// No --config and no Caddyfile here: an error on stderr, exit 2.
	out, errOut, err := run(t.TempDir(), "--audience", "127.0.0.1", b.Cookie)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || out != "" || !strings.Contains(errOut, "--config") {
		t.Errorf("decode without a config: %v, stdout %q, stderr %q; want exit 2 and an error naming --config", err, out, errOut)
	}
}
