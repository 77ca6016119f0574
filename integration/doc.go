// Package integration holds caddy-session's end-to-end tests. They build the
// real Caddy binary from ./cmd/caddy once, start one Caddy process per test
// with its own Caddyfile, ports and storage, put an in-process echo upstream
// behind it, and check the behaviour the README and docs/ promise to
// browsers, upstreams and operators. The package has no non-test code.
//
// Run them with:
//
//	go test -race ./integration/
//
// CADDY_SESSION_RACE=1 builds the Caddy binary with -race as well, and a data
// race reported by that Caddy fails the test that started it. The first
// such build of all of Caddy's modules takes minutes: warm the build cache
// with `go build -race -o /tmp/caddy-race ./cmd/caddy` or pass -timeout 30m.
package integration
