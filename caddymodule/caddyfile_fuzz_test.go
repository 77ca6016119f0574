package caddymodule

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// caddyfileSeeds are session blocks, good and bad, for FuzzUnmarshalCaddyfile:
// every subdirective, every store, and the mistakes the parser must turn
// into errors.
var caddyfileSeeds = []string{
	// The full syntax.
	`session {
	secret 0123456789abcdef0123456789abcdef {env.OLD_SECRET}
	cookie __Host-sid {
		path /
		max_age 12h
		expires 2099-01-02T15:04:05Z
		secure on
		http_only off
		same_site strict
	}
	store cookie {
		max_chunks 3
	}
	idle_timeout 30m
	api_path /api/session
	client_writable countryCode cart
	client_readable *
	trusted_origins https://shop.example.com http://localhost:3000
	forward countryCode customerId
	max_body 16KiB
	max_size 32KiB
	max_keys 10
	on_store_error fail_closed
	vary_cookie off
	sign_headers {env.SIGN_KEY}
	migrate_from hydrogen_v1 hydrogenSession
}`,
	"session",
	"session {\n}",
	"session {\n\tapi_path off\n}",
	"session {\n\tstore memory {\n\t\tname shop\n\t\tmax_sessions 10\n\t}\n}",
	"session {\n\tstore file /var/lib/sessions {\n\t\tsweep_interval 1m\n\t}\n}",
	"session {\n\tstore redis redis://user:pass@127.0.0.1:6379/2\n}",
	`session {
	store redis {
		addresses 127.0.0.1:7000 127.0.0.1:7001 127.0.0.1:7002
		sentinel_master mymaster
		sentinel_username u
		sentinel_password p
		username u
		password {env.REDIS_PASSWORD}
		db 3
		tls {
			ca /ca.pem
			cert /cert.pem
			key /key.pem
			server_name redis.internal
		}
		key_prefix shop:
		dial_timeout 250ms
		read_timeout 200ms
		write_timeout 200ms
		pool_size 20
		local_cache 5000
	}
}`,
	"session {\n\tstore redis {\n\t\turl rediss://r:6380\n\t\tcluster\n\t}\n}",
	"session {\n\tstore redis {\n\t\turl redis://r:6379\n\t\tlocal_cache off\n\t}\n}",
	// Mistakes.
	"session arg {\n}",
	"session {\n\tsecret\n}",
	"session {\n\tsecret a\n\tsecret b\n}",
	"session {\n\tcookie a b\n}",
	"session {\n\tcookie {\n\t\tname x\n\t\tname y\n\t}\n}",
	"session {\n\tcookie x {\n\t\tname y\n\t}\n}",
	"session {\n\tcookie {\n\t\tpath relative\n\t\tsecure maybe\n\t}\n}",
	"session {\n\tcookie __Host-x {\n\t\tdomain a.example\n\t}\n}",
	"session {\n\tcookie {\n\t\tsame_site none\n\t\tsecure off\n\t}\n}",
	"session {\n\tstore\n}",
	"session {\n\tstore nosuchstore\n}",
	"session {\n\tstore cookie {\n\t\tmax_chunks -1\n\t}\n}",
	"session {\n\tstore memory {\n\t\tmax_sessions 0\n\t\tbogus\n\t}\n}",
	"session {\n\tstore redis\n}",
	"session {\n\tstore redis {\n\t\ttls {\n\t\t\tca\n\t\t}\n\t}\n}",
	"session {\n\tidle_timeout -5m\n}",
	"session {\n\tidle_timeout 1x\n}",
	"session {\n\tapi_path relative\n}",
	"session {\n\tmax_body 0\n\tmax_size 99999999999999999999\n\tmax_keys 1e3\n}",
	"session {\n\tmax_body 64KiB 1\n}",
	"session {\n\ttrusted_origins https://*.example.com http://a/b ftp://x\n}",
	"session {\n\ton_store_error sometimes\n}",
	"session {\n\tvary_cookie on off\n}",
	"session {\n\tmigrate_from hydrogen_v2\n}",
	"session {\n\tmigrate_from hydrogen_v1 a b\n}",
	"session {\n\tunknown x\n}",
	"session {\n\t{\n\t}\n}",
	"session {\n\tcookie {\n\t\t{\n\t\t}\n\t}\n}",
	"session {\n\tstore cookie {\n\t\tmax_chunks 2\n\t}\n\tstore memory\n}",
	"session {\n\tsecret `raw {literal}` \"quoted value\" <<EOF\n\tdoc\n\tEOF\n}",
	"session {\n\tsecret {$SECRET} {env.X:default}\n}",
	"session {\n\tclient_writable \x00 \xff \"\"\n}",
	"session {",
	"}",
	"session {\n\tcookie {\n",
}

// parseSessionTokens runs UnmarshalCaddyfile on tokens and returns the
// handler's JSON, or the error.
func parseSessionTokens(tokens []caddyfile.Token) ([]byte, error) {
	h := new(Handler)
	if err := h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
		return nil, err
	}
	return json.Marshal(h)
}

// rawTokens builds tokens straight from data, split on NUL bytes (lines on
// '\n'), so the parser also meets tokens the lexer would never produce:
// empty ones, ones holding spaces, braces mid-token.
func rawTokens(data string) []caddyfile.Token {
	var tokens []caddyfile.Token
	line := 1
	for _, text := range strings.Split(data, "\x00") {
		tokens = append(tokens, caddyfile.Token{File: "Fuzzfile", Line: line, Text: text})
		line += strings.Count(text, "\n")
	}
	return tokens
}

// FuzzUnmarshalCaddyfile: the session directive's parser (and the store
// modules' parsers it calls) never panics on any input, lexed or as raw
// tokens; what it accepts marshals to JSON that loads back, and parsing is
// deterministic.
func FuzzUnmarshalCaddyfile(f *testing.F) {
	for _, s := range caddyfileSeeds {
		f.Add(s)
	}
	f.Add("session\x00{\x00secret\x00a b c\x00}")
	f.Add("session\x00{\x00store\x00redis\x00{\x00}\x00}")
	f.Add("session\x00{\x00\x00}")
	f.Fuzz(func(t *testing.T, data string) {
		inputs := [][]caddyfile.Token{rawTokens(data)}
		for _, text := range []string{data, "session {\n" + data + "\n}"} {
			if tokens, err := caddyfile.Tokenize([]byte(text), "Fuzzfile"); err == nil {
				inputs = append(inputs, tokens)
			}
		}
		for _, tokens := range inputs {
			out, err := parseSessionTokens(tokens)
			again, err2 := parseSessionTokens(tokens)
			if (err == nil) != (err2 == nil) || !bytes.Equal(out, again) {
				t.Fatalf("parsing is not deterministic: %s / %v, then %s / %v", out, err, again, err2)
			}
			if err != nil {
				if err.Error() == "" {
					t.Fatal("an error without a message")
				}
				continue
			}
			var back Handler
			if err := json.Unmarshal(out, &back); err != nil {
				t.Fatalf("accepted config does not load back: %v\n%s", err, out)
			}
			if back.MaxBody < 0 || back.MaxSize < 0 || back.MaxKeys < 0 || back.IdleTimeout < 0 {
				t.Fatalf("accepted a negative bound: %s", out)
			}
		}
	})
}

// TestCaddyfileSeedsParse: the good seeds above really are good, so the
// fuzz target starts from configurations that reach deep into the parser.
func TestCaddyfileSeedsParse(t *testing.T) {
	for i, s := range caddyfileSeeds[:9] {
		tokens, err := caddyfile.Tokenize([]byte(s), "Seed")
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		if _, err := parseSessionTokens(tokens); err != nil {
			t.Errorf("seed %d does not parse: %v\n%s", i, err, s)
		}
	}
}
