package cookie

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string // substring of the error; "" for valid
	}{
		{"zero value: all defaults", Options{}, ""},
		{"typical", Options{Name: "__session", Path: "/", MaxAge: DefaultMaxAge, HTTPOnly: true, SameSite: http.SameSiteLaxMode}, ""},
		{"token punctuation", Options{Name: "s!#$%&'*+-.^_`|~1"}, ""},
		{"space in name", Options{Name: "my session"}, "cannot hold"},
		{"semicolon in name", Options{Name: "a;b"}, "cannot hold"},
		{"equals in name", Options{Name: "a=b"}, "cannot hold"},
		{"comma in name", Options{Name: "a,b"}, "cannot hold"},
		{"quote in name", Options{Name: `a"b`}, "cannot hold"},
		{"control in name", Options{Name: "a\x00b"}, "cannot hold"},
		{"newline in name", Options{Name: "a\nb"}, "cannot hold"},
		{"non-ASCII name", Options{Name: "séance"}, "cannot hold"},
		{"long name", Options{Name: strings.Repeat("n", 257)}, "at most 256"},

		{"__Host- secure auto", Options{Name: "__Host-session", Path: "/"}, ""},
		{"__Host- secure on, empty path means /", Options{Name: "__Host-session", Secure: SecureOn}, ""},
		{"__Host- secure off", Options{Name: "__Host-session", Secure: SecureOff}, "only when it is Secure"},
		{"__Host- path /app", Options{Name: "__Host-session", Path: "/app"}, `only with path "/"`},
		{"__Host- domain", Options{Name: "__Host-session", Domain: "example.com"}, "without a domain"},
		{"__host- lowercase secure off", Options{Name: "__host-session", Secure: SecureOff}, "Secure"},
		{"__Secure- secure off", Options{Name: "__Secure-session", Secure: SecureOff}, "only when it is Secure"},
		{"__Secure- with domain and path", Options{Name: "__Secure-session", Domain: "example.com", Path: "/shop"}, ""},
		{"__SECURE- secure off", Options{Name: "__SECURE-s", Secure: SecureOff}, "Secure"},

		{"SameSite None secure auto", Options{SameSite: http.SameSiteNoneMode}, ""},
		{"SameSite None secure off", Options{SameSite: http.SameSiteNoneMode, Secure: SecureOff}, "SameSite=None without Secure"},
		{"SameSite Strict secure off", Options{SameSite: http.SameSiteStrictMode, Secure: SecureOff}, ""},
		{"SameSite default mode", Options{SameSite: http.SameSiteDefaultMode}, ""},
		{"SameSite unknown", Options{SameSite: http.SameSite(9)}, "lax, strict or none"},
		{"Secure mode unknown", Options{Secure: SecureMode(7)}, "auto, on or off"},

		{"relative path", Options{Path: "shop"}, `must start with "/"`},
		{"path with semicolon", Options{Path: "/a;b"}, "cannot hold"},
		{"path with control", Options{Path: "/a\rb"}, "cannot hold"},
		{"path with non-ASCII", Options{Path: "/ç"}, "cannot hold"},
		{"long path", Options{Path: "/" + strings.Repeat("p", 1024)}, "at most 1024"},
		{"domain", Options{Domain: "shop.example.com"}, ""},
		{"domain leading dot", Options{Domain: ".example.com"}, ""},
		{"domain IPv4", Options{Domain: "192.0.2.1"}, ""},
		{"domain IPv6", Options{Domain: "::1"}, "not a domain name"},
		{"domain with scheme", Options{Domain: "https://example.com"}, "not a domain name"},
		{"domain with port", Options{Domain: "example.com:443"}, "not a domain name"},
		{"domain wildcard", Options{Domain: "*.example.com"}, "not a domain name"},
		{"domain underscore", Options{Domain: "ex_ample.com"}, "not a domain name"},
		{"domain label dash", Options{Domain: "-shop.example.com"}, "not a domain name"},
		{"domain empty label", Options{Domain: "shop..example.com"}, "not a domain name"},
		{"domain digits only", Options{Domain: "123.456"}, "not a domain name"},
		{"negative max age", Options{MaxAge: -time.Second}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestValidateMatchesNetHTTP: whatever Validate accepts, net/http writes
// whole (it drops an invalid Domain or Path bytes with only a log line).
func TestValidateMatchesNetHTTP(t *testing.T) {
	for _, o := range []Options{
		{Domain: "shop.example.com"}, {Domain: ".example.com"}, {Domain: "192.0.2.1"},
		{Path: "/a b/c"}, {Name: "s!#$%&'*+-.^_`|~1"},
	} {
		if err := o.Validate(); err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		c := o.Expire(o.ChunkName(0), false)
		if err := c.Valid(); err != nil {
			t.Errorf("%+v: net/http says %v", o, err)
		}
		line := c.String()
		if o.Domain != "" && !strings.Contains(line, "; Domain="+strings.TrimPrefix(o.Domain, ".")) {
			t.Errorf("%+v: Domain dropped from %q", o, line)
		}
		if !strings.Contains(line, "; Path="+o.path()) {
			t.Errorf("%+v: Path altered in %q", o, line)
		}
	}
}

func TestIsSecure(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		tls  bool
		want bool
	}{
		{"auto over TLS", Options{}, true, true},
		{"auto over HTTP", Options{}, false, false},
		{"on over HTTP", Options{Secure: SecureOn}, false, true},
		{"on over TLS", Options{Secure: SecureOn}, true, true},
		{"off over TLS", Options{Secure: SecureOff}, true, false},
		{"off over HTTP", Options{Secure: SecureOff}, false, false},
		{"SameSite None auto over HTTP", Options{SameSite: http.SameSiteNoneMode}, false, true},
		{"SameSite None off", Options{SameSite: http.SameSiteNoneMode, Secure: SecureOff}, false, true},
		{"__Host- auto over HTTP", Options{Name: "__Host-s"}, false, true},
		{"__Secure- auto over HTTP", Options{Name: "__Secure-s"}, false, true},
		{"Strict auto over HTTP", Options{SameSite: http.SameSiteStrictMode}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.o.IsSecure(tt.tls); got != tt.want {
				t.Errorf("IsSecure(%v) = %v, want %v", tt.tls, got, tt.want)
			}
		})
	}
}

func TestChunkName(t *testing.T) {
	o := Options{Name: "sid"}
	for i, want := range []string{"sid", "sid.1", "sid.2", "sid.3"} {
		if got := o.ChunkName(i); got != want {
			t.Errorf("ChunkName(%d) = %q, want %q", i, got, want)
		}
	}
	if got := o.ChunkName(12); got != "sid.12" {
		t.Errorf("ChunkName(12) = %q", got)
	}
	if got := (Options{}).ChunkName(1); got != "__session.1" {
		t.Errorf("default ChunkName(1) = %q", got)
	}
	for i := range 30 {
		if n := o.ChunkName(i); !o.IsSessionCookie(n) {
			t.Errorf("IsSessionCookie(ChunkName(%d) = %q) = false", i, n)
		}
	}
}

func TestWithDefaults(t *testing.T) {
	got := Options{Domain: "example.com", HTTPOnly: true}.WithDefaults()
	want := Options{Name: "__session", Path: "/", Domain: "example.com", MaxAge: 30 * 24 * time.Hour, HTTPOnly: true, SameSite: http.SameSiteLaxMode}
	if got != want {
		t.Errorf("WithDefaults = %+v, want %+v", got, want)
	}
	keep := Options{Name: "s", Path: "/a", MaxAge: time.Hour, SameSite: http.SameSiteStrictMode}
	if got := keep.WithDefaults(); got != keep {
		t.Errorf("WithDefaults changed set fields: %+v", got)
	}
}
