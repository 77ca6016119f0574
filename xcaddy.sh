#!/usr/bin/env bash
# Builds ./caddy with xcaddy: Caddy with its standard modules plus the session
# module from this working tree (not from a published version).
#
#   ./xcaddy.sh                        # then: ./caddy run --config Caddyfile.example
#   ./xcaddy.sh --with github.com/...  # extra arguments go to `xcaddy build`
#
# Caddy's version is the one go.mod requires (CADDY_VERSION overrides it).
# xcaddy itself is installed with `go install` when missing.
set -euo pipefail

XCADDY_VERSION=v0.4.5
MODULE=github.com/caddy-session/caddy-session

cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v go >/dev/null 2>&1; then
	echo "xcaddy.sh: go is not installed (https://go.dev/doc/install)" >&2
	exit 1
fi

CADDY_VERSION=${CADDY_VERSION:-$(go list -m -f '{{.Version}}' github.com/caddyserver/caddy/v2)}

# Find xcaddy at the pinned version, on PATH or where `go install` puts it.
gobin=$(go env GOBIN)
if [ -z "$gobin" ]; then
	gobin="$(go env GOPATH | cut -d: -f1)/bin"
fi
xcaddy=""
for candidate in "$(command -v xcaddy 2>/dev/null || true)" "$gobin/xcaddy"; do
	if [ -n "$candidate" ] && [ -x "$candidate" ] &&
		"$candidate" version 2>/dev/null | grep -q "^$XCADDY_VERSION\b"; then
		xcaddy=$candidate
		break
	fi
done
if [ -z "$xcaddy" ]; then
	echo "xcaddy.sh: installing xcaddy $XCADDY_VERSION into $gobin"
	go install "github.com/caddyserver/xcaddy/cmd/xcaddy@$XCADDY_VERSION"
	xcaddy="$gobin/xcaddy"
fi
echo "xcaddy.sh: $("$xcaddy" version | head -n 1) building Caddy $CADDY_VERSION"

# This module is not published: xcaddy's `go get` steps must resolve it to the
# replacement below without asking a module proxy about it. A proxy answers
# "not found" (404), which Go accepts, but some proxies and mirrors answer
# "forbidden" (403), which stops the build. A tiny file:// proxy, consulted
# first, answers "no versions" for this module only; everything else comes
# from the proxies configured as usual.
localproxy=$(mktemp -d)
trap 'rm -rf "$localproxy"' EXIT
for path in "$MODULE" "$MODULE/caddymodule"; do
	mkdir -p "$localproxy/$path/@v"
	: >"$localproxy/$path/@v/list"
done
GOPROXY="file://$localproxy,$(go env GOPROXY)"
export GOPROXY

# xcaddy's default build flags (-trimpath, -tags nobadger,nomysql,nopgx) make
# every package compile anew; plain flags reuse the Go build cache that
# `go build ./cmd/caddy`, `go vet` or an earlier run filled, which turns a
# several-minute build into seconds. Set XCADDY_GO_BUILD_FLAGS to choose others
# (any non-empty value replaces xcaddy's defaults).
export XCADDY_GO_BUILD_FLAGS="${XCADDY_GO_BUILD_FLAGS:-"-ldflags='-w -s'"}"

# --with adds the blank import of the handler package; --replace points the
# module at this working tree.
"$xcaddy" build "$CADDY_VERSION" \
	--output ./caddy \
	--with "$MODULE/caddymodule" \
	--replace "$MODULE=./" \
	"$@"

./caddy list-modules | grep -E '^http\.(handlers\.session|session\.)'
