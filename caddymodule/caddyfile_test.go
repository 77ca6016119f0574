package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// adapt turns a site's Caddyfile into JSON through Caddy's own adapter.
func adapt(t *testing.T, src string) (string, error) {
	t.Helper()
	out, _, err := (caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}).Adapt([]byte(src), nil)
	return string(out), err
}

func TestCaddyfileAdaptFull(t *testing.T) {
	out, err := adapt(t, `:8080 {
	session {
		secret 0123456789abcdef0123456789abcdef {env.OLD_SECRET}
		cookie __Host-sid {
			path /
			max_age 12h
			secure on
			http_only off
			same_site strict
		}
		store cookie {
			max_chunks 3
		}
		idle_timeout 30m
		api_path /api/session
		client_script off
		client_writable countryCode cart
		client_readable *
		trusted_origins https://shop.example.com http://localhost:3000
		forward countryCode customerId
		max_body 16KiB
		max_size 32KiB
		max_keys 10
		on_store_error fail_closed
		vary_cookie off
	}
	reverse_proxy localhost:9000
}`)
	if err != nil {
		t.Fatal(err)
	}
	handler := sessionHandler(t, out)
	want := `{"api_path":"/api/session","client_readable":["*"],"client_writable":["countryCode","cart"],` +
		`"cookie":{"http_only":false,"max_age":43200000000000,"name":"__Host-sid","path":"/","same_site":"strict","secure":"on"},` +
		`"disable_client_script":true,"forward":["countryCode","customerId"],"handler":"session","idle_timeout":1800000000000,"max_body":16384,"max_keys":10,` +
		`"max_size":32768,"on_store_error":"fail_closed","secrets":["0123456789abcdef0123456789abcdef","{env.OLD_SECRET}"],` +
		`"store":{"backend":"cookie","max_chunks":3},"trusted_origins":["https://shop.example.com","http://localhost:3000"],"vary_cookie":false}`
	var exp any
	json.Unmarshal([]byte(want), &exp)
	g, _ := json.Marshal(handler)
	e, _ := json.Marshal(exp)
	if string(g) != string(e) {
		t.Errorf("session JSON:\n got %s\nwant %s", g, e)
	}
}

// TestCaddyfileOrder proves no order line is needed: session runs before
// the directives that use its headers and placeholders.
func TestCaddyfileOrder(t *testing.T) {
	out, err := adapt(t, `:8080 {
	reverse_proxy localhost:9000
	respond /x "hi"
	templates
	rewrite /a /b
	request_header X-A 1
	header X-B 2
	session
}`)
	if err != nil {
		t.Fatal(err)
	}
	first := strings.Index(out, `"handler":"session"`)
	for _, h := range []string{"headers", "rewrite", "templates", "static_response", "reverse_proxy"} {
		i := strings.Index(out, `"handler":"`+h+`"`)
		if i < 0 || first < 0 || first > i {
			t.Errorf("session (at %d) must come before %s (at %d): %s", first, h, i, out)
		}
	}
}

func TestCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"unknown", "bogus 1", `unknown subdirective "bogus"`},
		{"duplicate", "max_keys 3\n\t\tmax_keys 4", `duplicate subdirective "max_keys"`},
		{"bad duration", "idle_timeout soon", `idle_timeout "soon"`},
		{"negative duration", "idle_timeout -5m", `idle_timeout "-5m"`},
		{"bad size", "max_body lots", `max_body "lots"`},
		{"bad keys", "max_keys 0", `max_keys "0"`},
		{"bad policy", "on_store_error maybe", `on_store_error "maybe"`},
		{"bad same_site", "cookie {\n\t\t\tsame_site sometimes\n\t\t}", `same_site "sometimes"`},
		{"bad secure", "cookie {\n\t\t\tsecure yes\n\t\t}", `secure "yes"`},
		{"unknown cookie option", "cookie {\n\t\t\tcolour blue\n\t\t}", `unknown cookie subdirective "colour"`},
		{"host prefix with domain", "cookie __Host-s {\n\t\t\tdomain example.com\n\t\t}", "__Host-"},
		{"host prefix insecure", "cookie __Host-s {\n\t\t\tsecure off\n\t\t}", "__Host-"},
		{"same_site none insecure", "cookie {\n\t\t\tsame_site none\n\t\t\tsecure off\n\t\t}", "SameSite=None"},
		{"bad origin path", "trusted_origins https://a.example/x", `trusted origin "https://a.example/x"`},
		{"bad origin wildcard", "trusted_origins https://*.example.com", `trusted origin`},
		{"bad origin scheme", "trusted_origins a.example.com", `trusted origin`},
		{"api path", "api_path session", `api_path "session"`},
		{"secret no args", "secret", "wrong argument count"},
		{"unknown store", "store nowhere", "http.session.stores.nowhere"},
		{"store cookie bad chunks", "store cookie {\n\t\t\tmax_chunks 0\n\t\t}", `max_chunks "0"`},
		{"vary bad", "vary_cookie maybe", `vary_cookie "maybe"`},
		{"client_script bad", "client_script maybe", `client_script "maybe"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := adapt(t, ":8080 {\n\tsession {\n\t\t"+tc.body+"\n\t}\n}\n")
			wantLineError(t, err, tc.want)
		})
	}
}

// findHandlers returns every handler object named name in adapted JSON.
// sessionHandler returns the one session handler of an adapted config.
func sessionHandler(t *testing.T, out string) map[string]any {
	t.Helper()
	var cfg any
	if err := json.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatal(err)
	}
	handlers := findHandlers(cfg, "session")
	if len(handlers) != 1 {
		t.Fatalf("want one session handler, got %s", out)
	}
	return handlers[0]
}

func findHandlers(v any, name string) []map[string]any {
	var out []map[string]any
	switch v := v.(type) {
	case map[string]any:
		if v["handler"] == name {
			out = append(out, v)
		}
		for _, c := range v {
			out = append(out, findHandlers(c, name)...)
		}
	case []any:
		for _, c := range v {
			out = append(out, findHandlers(c, name)...)
		}
	}
	return out
}

// TestCaddyfileCookieErrorLine: an invalid cookie is reported at the line
// that made it invalid.
func TestCaddyfileCookieErrorLine(t *testing.T) {
	_, err := adapt(t, ":8080 {\n\tsession {\n\t\tcookie __Host-s {\n\t\t\tpath /\n\t\t\tdomain example.com\n\t\t\thttp_only\n\t\t}\n\t}\n}\n")
	if err == nil || !strings.Contains(err.Error(), "Caddyfile:5") {
		t.Errorf("want the error at line 5 (domain), got %v", err)
	}
}

// wantLineError checks a Caddyfile error: there is one, it says want, and
// it names the file and line.
func wantLineError(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error containing %q, got none", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	if !strings.Contains(err.Error(), "Caddyfile:") {
		t.Errorf("error %q does not name the line", err)
	}
}
