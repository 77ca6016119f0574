package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestBlockErrors: every block parser refuses unknown and repeated
// subdirectives, at their line, names the known ones and suggests the
// nearest.
func TestBlockErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		unm   caddyfile.Unmarshaler
		input string
		want  []string
	}{
		{"session typo", new(Handler), "session {\n\tclient_writeable a\n}",
			[]string{`Testfile:2`, `unknown subdirective "client_writeable" of session; did you mean client_writable? known: admin_id, api_path,`}},
		{"session unknown", new(Handler), "session {\n\tbogus 1\n}",
			[]string{`unknown subdirective "bogus" of session; known: `}},
		{"session duplicate", new(Handler), "session {\n\tmax_keys 3\n\tmax_keys 4\n}",
			[]string{`Testfile:3`, `duplicate subdirective "max_keys" of session; give it once`}},
		{"cookie typo", new(Handler), "session {\n\tcookie {\n\t\tsamesite lax\n\t}\n}",
			[]string{`Testfile:3`, `unknown cookie subdirective "samesite"; did you mean same_site? known: domain, expires, http_only, max_age, name, partitioned, path, priority, same_site, secure`}},
		{"cookie duplicate", new(Handler), "session {\n\tcookie {\n\t\tpath /\n\t\tpath /x\n\t}\n}",
			[]string{`Testfile:4`, `duplicate cookie subdirective "path"`}},
		{"store cookie", new(CookieStore), "cookie {\n\tmax_chunk 3\n}",
			[]string{`unknown subdirective "max_chunk" of store cookie; did you mean max_chunks? known: max_chunks`}},
		{"store cookie duplicate", new(CookieStore), "cookie {\n\tmax_chunks 3\n\tmax_chunks 3\n}",
			[]string{`Testfile:3`, `duplicate subdirective "max_chunks" of store cookie`}},
		{"store memory", new(MemoryStore), "memory {\n\tmaxsessions 3\n}",
			[]string{`did you mean max_sessions? known: max_bytes, max_sessions, name`}},
		{"store memory duplicate", new(MemoryStore), "memory {\n\tname a\n\tname b\n}",
			[]string{`duplicate subdirective "name" of store memory`}},
		{"store file", new(FileStore), "file /tmp/x {\n\tinterval 1m\n}",
			[]string{`unknown subdirective "interval" of store file; known: sweep_interval`}},
		{"store file duplicate", new(FileStore), "file /tmp/x {\n\tsweep_interval 1m\n\tsweep_interval 1m\n}",
			[]string{`duplicate subdirective "sweep_interval" of store file`}},
		{"store redis", new(RedisStore), "redis redis://r {\n\tpoolsize 3\n}",
			[]string{`unknown subdirective "poolsize" of store redis; did you mean pool_size? known: addresses,`}},
		{"store redis tls", new(RedisStore), "redis redis://r {\n\ttls {\n\t\tcerts /c\n\t}\n}",
			[]string{`Testfile:3`, `unknown tls subdirective "certs" of store redis; did you mean cert? known: ca, cert, key, server_name`}},
		{"store redis tls duplicate", new(RedisStore), "redis redis://r {\n\ttls {\n\t\tca /a\n\t\tca /b\n\t}\n}",
			[]string{`Testfile:4`, `duplicate tls subdirective "ca" of store redis`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.unm.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestBlockParses: the tables hold every subdirective of the syntax.
func TestBlockParses(t *testing.T) {
	for _, tc := range []struct {
		unm   caddyfile.Unmarshaler
		input string
	}{
		{new(CookieStore), "cookie {\n\tmax_chunks 32\n}"},
		{new(MemoryStore), "memory {\n\tname a\n\tmax_sessions 1\n\tmax_bytes 1MiB\n}"},
		{new(FileStore), "file /tmp/x {\n\tsweep_interval 1m\n}"},
		{new(RedisStore), "redis {\n\turl redis://r\n\taddresses a:1\n\tcluster\n\tsentinel_master m\n\tsentinel_username u\n\tsentinel_password p\n\tusername u\n\tpassword p\n\tdb 0\n\ttls {\n\t\tca a\n\t\tcert c\n\t\tkey k\n\t\tserver_name s\n\t}\n\tkey_prefix p:\n\tdial_timeout 1s\n\tread_timeout 1s\n\twrite_timeout 1s\n\tpool_size 1\n\tlocal_cache off\n}"},
	} {
		if err := tc.unm.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input)); err != nil {
			t.Errorf("%s: %v", tc.input, err)
		}
	}
}

func TestNearest(t *testing.T) {
	known := []string{"client_readable", "client_writable", "cookie", "db", "max_age", "same_site", "secret"}
	for _, tc := range []struct{ in, want string }{
		{"client_writeable", "client_writable"},
		{"clinet_readable", "client_readable"}, // transposition: one edit
		{"secrets", "secret"},
		{"Cookie", "cookie"},
		{"maxage", "max_age"},
		{"dc", ""}, // one edit in two characters is no typo
		{"ab", ""},
		{"colour", ""},
		{"bogus", ""},
		{strings.Repeat("x", 1000), ""},
	} {
		if got := nearest(tc.in, known); got != tc.want {
			t.Errorf("nearest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "abc", 3}, {"kitten", "sitting", 3},
		{"ab", "ba", 1}, {"abcd", "acbd", 1}, {"same_site", "samesite", 1},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := editDistance(tc.b, tc.a); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.b, tc.a, got, tc.want)
		}
	}
}
