package caddystorage_test

import (
	"testing"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-session/caddy-session/examples/caddystorage"
	"github.com/caddy-session/caddy-session/storage"
	"github.com/caddy-session/caddy-session/storage/storetest"
)

// TestConformance runs caddy-session's conformance kit against the store,
// backed by certmagic's file storage (Caddy's default) in a temporary
// folder: the one call a custom store needs.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storage.Store {
		s, err := caddystorage.New(&certmagic.FileStorage{Path: t.TempDir()}, "")
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
