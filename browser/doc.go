// Package browser holds the end-to-end tests of the storefront demo in a real
// browser: headless Chromium, driven from Go with chromedp, against a Caddy
// built from this tree and running a copy of Caddyfile.example on free
// loopback ports.
//
// The tests skip, saying why, when Chromium is not installed
// (/usr/bin/chromium, Debian's chromium package), and fail instead when the
// CI environment variable is set. CADDY_SESSION_CHROMIUM names another
// Chrome or Chromium binary to use. Screenshots of the main steps are kept in
// a temporary directory whose path each test logs (go test -v ./browser/).
package browser
