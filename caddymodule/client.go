package caddymodule

import (
	"bytes"
	"crypto/sha256"
	_ "embed" // the browser client
	"encoding/hex"
	"net/http"
	"path"
	"strings"
	"time"
)

// clientScript is the browser client served at <api_path>/client.js: an
// ES module with no dependencies (get, set, update, destroy, subscribe)
// that talks to the API path it is served under.
//
//go:embed client/session.js
var clientScript []byte

// clientScriptETag is a strong validator of clientScript: a hash of its
// content, so it changes exactly when a new version of the module ships a
// new script.
var clientScriptETag = func() string {
	sum := sha256.Sum256(clientScript)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}()

// clientScriptName is the browser client's name under the API path.
const clientScriptName = "client.js"

// clientScriptCache lets browsers keep the script for an hour without
// asking, then revalidate it with its ETag (a 304 without a body). An
// upgraded gateway reaches every browser within the hour; the script only
// speaks the documented API, so an hour-old copy keeps working meanwhile.
const clientScriptCache = "public, max-age=3600"

// serveClientScript answers <api_path>/client.js and reports whether it
// did; any other path under the API path is left to serveAPI (a 404). The
// script is the same for every visitor: no session is loaded for it.
func (h *Handler) serveClientScript(w http.ResponseWriter, r *http.Request) bool {
	if h.DisableClientScript {
		return false
	}
	// Compared as apiRoute compares: decoded, cleaned, without ";params".
	p := r.URL.Path
	if i := strings.IndexByte(p, ';'); i >= 0 {
		p = p[:i]
	}
	if path.Clean("/"+p) != path.Join(h.APIPath, clientScriptName) {
		return false
	}
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Content-Type", "application/json")
		hdr.Set("Cache-Control", "no-store")
		hdr.Set("Allow", "GET, HEAD")
		_ = h.apiFail(w, r, http.StatusMethodNotAllowed, "method not allowed; "+path.Join(h.APIPath, clientScriptName)+" is the browser client: GET it (import it as a module)")
		return true
	}
	hdr.Set("Content-Type", "text/javascript; charset=utf-8")
	hdr.Set("Cache-Control", clientScriptCache)
	hdr.Set("ETag", clientScriptETag)
	// ServeContent answers If-None-Match with 304 (weak comparison, as
	// RFC 9110 asks: a W/ copy from a compressing proxy matches), HEAD
	// without a body, and ranges.
	http.ServeContent(w, r, clientScriptName, time.Time{}, bytes.NewReader(clientScript))
	return true
}
