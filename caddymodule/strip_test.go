package caddymodule

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestIsReservedHeader(t *testing.T) {
	for name, want := range map[string]bool{
		"X-Session-Foo": true, "x-session-foo": true, "X-SESSION": true,
		"X_Session_Foo": true, "X.Session.Foo": true, "x_session": true,
		"X-Session_Foo": true, "x.session-set": true, "X-Sessionid": true,
		"X-Sess": false, "Session": false, "X-Sessio": false, "Y-Session-Foo": false,
		"XX-Session": false, " X-Session": false, "": false, "Cookie": false,
	} {
		if got := IsReservedHeader(name); got != want {
			t.Errorf("IsReservedHeader(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestStripRequest(t *testing.T) {
	r, _ := http.NewRequest("POST", "http://x/", strings.NewReader("body"))
	r.Header = http.Header{
		"X-Session-Customerid": {"evil"},
		"X_session_customerid": {"evil"},
		"X.Session.Role":       {"admin"},
		"Accept":               {"*/*"},
		"Connection":           {"keep-alive, X-Session-Countrycode", "x_session_a"},
		"Upgrade":              {"h2c"},
		"Http2-Settings":       {"AAMAAABkAARAAAAAAAIAAAAA"},
	}
	r.Trailer = http.Header{"X-Session-Customerid": nil, "Digest": nil}
	stripRequest(r)
	for name := range r.Header {
		if IsReservedHeader(name) {
			t.Errorf("reserved header %q survived", name)
		}
	}
	if got := r.Header["Connection"]; len(got) != 1 || got[0] != "keep-alive" {
		t.Errorf("Connection = %q, want [keep-alive]", got)
	}
	if _, ok := r.Header["Upgrade"]; ok {
		t.Error("an h2c Upgrade survived")
	}
	if _, ok := r.Header["Http2-Settings"]; ok {
		t.Error("HTTP2-Settings survived")
	}
	if _, ok := r.Trailer["X-Session-Customerid"]; ok {
		t.Error("a declared reserved trailer survived")
	}
	// net/http fills trailers at EOF: they must be cleaned then too.
	r.Trailer["X-Session-Late"] = []string{"evil"}
	r.Trailer["Digest"] = []string{"ok"}
	if _, err := io.ReadAll(r.Body); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Trailer["X-Session-Late"]; ok {
		t.Error("a reserved trailer set at EOF survived")
	}
	if r.Trailer.Get("Digest") != "ok" {
		t.Error("an ordinary trailer was removed")
	}
}

func TestStripRequestKeepsWebSocket(t *testing.T) {
	r, _ := http.NewRequest("GET", "http://x/", nil)
	r.Header = http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}}
	stripRequest(r)
	if r.Header.Get("Upgrade") != "websocket" || r.Header.Get("Connection") != "Upgrade" {
		t.Errorf("websocket upgrade was changed: %v", r.Header)
	}
	r.Header = http.Header{"Upgrade": {"websocket, h2c"}, "Connection": {"Upgrade, HTTP2-Settings"}}
	stripRequest(r)
	if _, ok := r.Header["Upgrade"]; ok {
		t.Errorf("mixed upgrade survived: %v", r.Header)
	}
	if _, ok := r.Header["Connection"]; ok {
		t.Errorf("upgrade tokens survived in Connection: %v", r.Header)
	}
}

// FuzzIsReservedHeader checks the normaliser against a plain reference.
func FuzzIsReservedHeader(f *testing.F) {
	for _, s := range []string{"X-Session-A", "x_session", "X.SESSION.a", "X-Sessio", "", "x-sessionß", "X\x00Session"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		norm := strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(name))
		// strings.ToLower maps some non-ASCII bytes to ASCII ('K' Kelvin
		// sign to 'k'); HTTP header names are ASCII, so compare on those.
		ascii := true
		for i := 0; i < len(name); i++ {
			if name[i] >= 0x80 {
				ascii = false
			}
		}
		if !ascii {
			return
		}
		if want := strings.HasPrefix(norm, "x-session"); IsReservedHeader(name) != want {
			t.Errorf("IsReservedHeader(%q) = %v, want %v", name, !want, want)
		}
	})
}
