// Command caddy is Caddy with its standard modules and caddy-session.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-session/caddy-session/caddymodule"
)

func main() {
	caddycmd.Main()
}
