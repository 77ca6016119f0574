// Command caddy is Caddy with its standard modules, caddy-session and the
// caddy_storage session store: what
//
//	xcaddy build --with github.com/caddy-session/caddy-session/caddymodule \
//		--with github.com/caddy-session/caddy-session/examples/caddystorage
//
// builds, as a Go main. The end-to-end test builds and runs it.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-session/caddy-session/caddymodule"
	_ "github.com/caddy-session/caddy-session/examples/caddystorage"
)

func main() {
	caddycmd.Main()
}
