package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// badLines returns the line numbers of src marked "# BAD".
func badLines(src string) []int {
	var out []int
	for i, line := range strings.Split(src, "\n") {
		if strings.HasSuffix(strings.TrimSpace(line), "# BAD") {
			out = append(out, i+1)
		}
	}
	return out
}

var lineRe = regexp.MustCompile(`Caddyfile:(\d+)`)

func TestCaddyfileErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		session string
		words   []string // the message names at least one of these
	}{
		{"unknown subdirective", "\tbogus_option 1 # BAD", []string{"bogus_option"}},
		{"unknown cookie subdirective", "\tcookie {\n\t\tflavour chocolate # BAD\n\t}", []string{"flavour"}},
		{"duplicate subdirective", "\tidle_timeout 1m\n\tidle_timeout 2m # BAD", []string{"idle_timeout"}},
		{"duplicate cookie block", "\tcookie a\n\tcookie b # BAD", []string{"cookie"}},
		{"duplicate cookie option", "\tcookie {\n\t\tpath /\n\t\tpath /x # BAD\n\t}", []string{"path"}},
		{"bad duration", "\tidle_timeout soon # BAD", []string{"soon", "duration"}},
		{"bad max_age", "\tcookie {\n\t\tmax_age forever # BAD\n\t}", []string{"forever", "duration", "max_age"}},
		{"bad size", "\tmax_body lots # BAD", []string{"lots", "size", "max_body"}},
		{"bad max_size", "\tmax_size -5 # BAD", []string{"-5", "size", "max_size"}},
		{"bad max_keys", "\tmax_keys many # BAD", []string{"many", "max_keys"}},
		{"bad same_site", "\tcookie {\n\t\tsame_site sometimes # BAD\n\t}", []string{"sometimes", "same_site"}},
		{"bad secure", "\tcookie {\n\t\tsecure maybe # BAD\n\t}", []string{"maybe", "secure"}},
		{"bad on_store_error", "\ton_store_error explode # BAD", []string{"explode", "on_store_error"}},
		{"missing argument", "\tapi_path # BAD", []string{"api_path", "argument"}},
		// A check on the whole cookie block may point anywhere in it.
		{"__Host- with a domain", "\tcookie __Host-sid { # BAD\n\t\tsecure on # BAD\n\t\tdomain example.com # BAD\n\t} # BAD", []string{"__Host-"}},
		{"__Host- with a path", "\tcookie __Host-sid { # BAD\n\t\tsecure on # BAD\n\t\tpath /shop # BAD\n\t} # BAD", []string{"__Host-"}},
		{"__Host- not secure", "\tcookie __Host-sid { # BAD\n\t\tsecure off # BAD\n\t} # BAD", []string{"__Host-"}},
		{"wildcard trusted origin", "\ttrusted_origins https://*.example.com # BAD", []string{"*.example.com", "origin"}},
		{"trusted origin without scheme", "\ttrusted_origins shop.example.com # BAD", []string{"shop.example.com", "origin"}},
		{"trusted origin with a path", "\ttrusted_origins https://shop.example.com/app # BAD", []string{"/app", "origin"}},
		// #16: what the Caddyfile holds fails at load, not at provisioning.
		{"short literal secret", "\tsecret tooShortXYZ123 # BAD", []string{"caddy session secret"}},
		{"secret repeated across lines", "\tsecret " + secretA + "\n\tsecret " + secretA + " # BAD", []string{"repeats secret #1"}},
		{"bad client_writable key", "\tclient_writable theme 9lives # BAD", []string{"9lives", "client_writable"}},
		{"bad index_key", "\tindex_key customer.id # BAD", []string{"customer.id", "index_key"}},
		{"key listed twice across lines", "\tforward theme\n\tforward theme # BAD", []string{"listed twice"}},
		{"keys naming one header", "\tclient_readable cart_id cart-id # BAD", []string{"same header"}},
		{"redis url of another scheme", "\tstore redis http://127.0.0.1:6379 # BAD", []string{"redis://"}},
		{"cookie expires in the past", "\tcookie {\n\t\texpires 2020-01-02T15:04:05Z # BAD\n\t}", []string{"has passed"}},
		{"unknown store near a known one", "\tstore redi # BAD", []string{"did you mean redis"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path, _ := writeCaddyfile(t, tc.session)
			src, _ := os.ReadFile(path)
			out, err := runCaddy(t, filepath.Dir(path), nil, "validate", "--config", path, "--adapter", "caddyfile")
			if err == nil {
				t.Fatalf("caddy validate accepted:\n%s\n%s", src, out)
			}
			named := false
			for _, w := range tc.words {
				if strings.Contains(strings.ToLower(out), strings.ToLower(w)) {
					named = true
				}
			}
			if !named {
				t.Errorf("the error names none of %q:\n%s", tc.words, out)
			}
			want := badLines(string(src))
			ok := false
			for _, m := range lineRe.FindAllStringSubmatch(out, -1) {
				n, _ := strconv.Atoi(m[1])
				for _, w := range want {
					ok = ok || n == w
				}
			}
			if !ok {
				t.Errorf("the error does not give line %v of the Caddyfile:\n%s\nCaddyfile:\n%s", want, out, src)
			}
		})
	}

	t.Run("unknown store", func(t *testing.T) {
		t.Parallel()
		out, _, err := validateCaddyfile(t, "validate", "\tstore nosuchstore", nil)
		if err == nil || !strings.Contains(out, "nosuchstore") {
			t.Errorf("unknown store: err %v:\n%s", err, out)
		}
	})
}

// findHandler returns the first object with "handler": "session" in v.
func findHandler(v any) map[string]any {
	switch x := v.(type) {
	case map[string]any:
		if x["handler"] == "session" {
			return x
		}
		for _, e := range x {
			if h := findHandler(e); h != nil {
				return h
			}
		}
	case []any:
		for _, e := range x {
			if h := findHandler(e); h != nil {
				return h
			}
		}
	}
	return nil
}

// TestCaddyfileFullSyntax: every subdirective of the draft adapts to the
// documented JSON fields and validates.
func TestCaddyfileFullSyntax(t *testing.T) {
	t.Parallel()
	common := `	secret ` + secretA + ` ` + secretB + `
	cookie sid {
		path /
		domain example.test
		max_age 24h
		expires 2099-01-01T00:00:00Z
		secure on
		http_only on
		same_site strict
	}
	idle_timeout 30m
	api_path /_api/session
	client_writable theme cart_id
	client_readable *
	trusted_origins https://shop.example https://admin.example:8443
	forward countryCode cart_id
	max_body 32KiB
	max_size 16KiB
	max_keys 20
	on_store_error fail_closed
	vary_cookie off`
	for name, store := range map[string]string{
		"cookie": "\n\tstore cookie {\n\t\tmax_chunks 3\n\t}",
		"memory": "\n\tstore memory {\n\t\tname shop\n\t\tmax_sessions 1000\n\t}",
		"file":   "\n\tstore file " + filepath.Join(t.TempDir(), "s"),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path, _ := writeCaddyfile(t, common+store)
			out, stderr, err := runCaddySplit(t, filepath.Dir(path), nil, "adapt", "--config", path, "--adapter", "caddyfile")
			if err != nil {
				t.Fatalf("caddy adapt: %v\n%s%s", err, out, stderr)
			}
			var cfg any
			if err := json.Unmarshal([]byte(out), &cfg); err != nil {
				t.Fatalf("adapt output is not JSON: %v\n%s", err, out)
			}
			h := findHandler(cfg)
			if h == nil {
				t.Fatalf("no session handler in the adapted JSON:\n%s", out)
			}
			for _, f := range []string{"secrets", "cookie", "store", "idle_timeout", "api_path", "client_writable",
				"client_readable", "trusted_origins", "forward", "max_body", "max_size", "max_keys", "on_store_error"} {
				if _, ok := h[f]; !ok {
					t.Errorf("adapted handler lacks field %q: %v", f, h)
				}
			}
			if st, _ := h["store"].(map[string]any); st == nil || st["backend"] != name {
				t.Errorf("store %v, want backend %q", h["store"], name)
			}
			if ck, _ := h["cookie"].(map[string]any); ck == nil || ck["name"] != "sid" {
				t.Errorf("cookie %v, want name sid", h["cookie"])
			}
			if out, _, err := validateCaddyfile(t, "validate", common+store, nil); err != nil {
				t.Errorf("caddy validate: %v\n%s", err, out)
			}
		})
	}
}

// TestCaddyfileConfigAdapt (#16): `caddy adapt` fails, with the line, on
// what the Caddyfile holds (validate is checked in TestCaddyfileErrors),
// and never shows the secret it refuses.
func TestCaddyfileConfigAdapt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, session, want string }{
		{"short secret", "\tsecret " + secretA + " tooShortXYZ123 # BAD", "secret #2"},
		{"expires past", "\tcookie {\n\t\texpires 2001-01-01T00:00:00Z # BAD\n\t}", "has passed"},
		{"unknown store", "\tstore redi # BAD", "cookie, file, memory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, _, err := validateCaddyfile(t, "adapt", tc.session, nil)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("caddy adapt: %v, want an error with %q:\n%s", err, tc.want, out)
			}
			if !regexp.MustCompile(`Caddyfile:\d+`).MatchString(out) {
				t.Errorf("the error does not give the line:\n%s", out)
			}
			if strings.Contains(out, "tooShortXYZ123") || strings.Contains(out, secretA) {
				t.Errorf("the error shows a secret:\n%s", out)
			}
		})
	}
}

// TestCaddyfileHydrogenSpellings (#16): Hydrogen's spellings of the cookie
// options and repeated list lines adapt to the handler's JSON and
// validate.
func TestCaddyfileHydrogenSpellings(t *testing.T) {
	t.Parallel()
	session := "\tsecret " + secretA + "\n\tsecret " + secretB + `
	cookie {
		same_site Lax
		secure true
		http_only false
		max_age 2592000
	}
	client_writable theme
	client_writable cart
	forward theme
	forward customerId
	trusted_origins https://a.example
	trusted_origins https://b.example`
	path, _ := writeCaddyfile(t, session)
	out, errOut, err := runCaddySplit(t, filepath.Dir(path), nil, "adapt", "--config", path, "--adapter", "caddyfile")
	if err != nil {
		t.Fatalf("caddy adapt: %v\n%s%s", err, out, errOut)
	}
	var cfg any
	if err := json.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatalf("adapted config: %v\n%s", err, out)
	}
	h := findHandler(cfg)
	got, _ := json.Marshal(map[string]any{"cookie": h["cookie"], "secrets": h["secrets"], "client_writable": h["client_writable"],
		"forward": h["forward"], "trusted_origins": h["trusted_origins"]})
	want := `{"client_writable":["theme","cart"],"cookie":{"http_only":false,"max_age":2592000000000000,"same_site":"lax","secure":"on"},` +
		`"forward":["theme","customerId"],"secrets":["` + secretA + `","` + secretB + `"],"trusted_origins":["https://a.example","https://b.example"]}`
	if string(got) != want {
		t.Errorf("adapted session handler:\n got %s\nwant %s", got, want)
	}
	if out, _, err := validateCaddyfile(t, "validate", session, nil); err != nil {
		t.Errorf("caddy validate: %v\n%s", err, out)
	}
}
