package caddymodule

import (
	"path"
	"strings"
	"testing"
)

// FuzzAPIRoute: the API path matcher's shortcut (a path without the API
// path's last segment is never the API) never changes its answer from the
// plain rule: cut ";params", clean as an upstream would, compare (S13).
func FuzzAPIRoute(f *testing.F) {
	for _, s := range []string{"/__session", "/__session/", "//__session", "/x/../__session", "/__session;x",
		"/__session/x", "/__sessions", "/api/session", "/api//session/", "/./api/x/../session;y", "", "__session", "/a;/__session"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		for _, api := range []string{"/__session", "/api/session", "/s"} {
			h := &Handler{APIPath: api, apiBase: path.Base(api)}
			exact, sub := h.apiRoute(p)
			q := p
			if i := strings.IndexByte(q, ';'); i >= 0 {
				q = q[:i]
			}
			q = path.Clean("/" + q)
			if wantExact, wantSub := q == api, strings.HasPrefix(q, api+"/"); exact != wantExact || sub != wantSub {
				t.Errorf("apiRoute(%q) with api_path %s = %v, %v; want %v, %v", p, api, exact, sub, wantExact, wantSub)
			}
		}
	})
}
