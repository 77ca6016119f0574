package caddymodule

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// TestExpiredKeyStaysEnded: an X-Session-Expire for a key whose value has
// ended (still stored, not yet removed) sets nothing: neither a new end
// nor promo=0 may bring the ended value back.
func TestExpiredKeyStaysEnded(t *testing.T) {
	now := time.Now()
	s := &session{values: map[string]json.RawMessage{
		"promo":                        json.RawMessage(`"SPRING"`),
		storage.ExpiryPrefix + "promo": json.RawMessage(`1`), // ended in 1970
		"cart":                         json.RawMessage(`[1]`),
	}}
	if v := visible(s.values, now); len(v) != 1 || v["cart"] == nil {
		t.Fatalf("visible = %v, want only the cart", v)
	}
	for _, h := range []string{"promo=0", "promo=3600"} {
		p, err := expirePatch([]string{h}, s, now)
		if err != nil || len(p) != 0 {
			t.Fatalf("X-Session-Expire: %s on an ended key = %v, %v; want nothing", h, p, err)
		}
	}
	p, err := expirePatch([]string{"cart=60"}, s, now)
	if err != nil || string(p[storage.ExpiryPrefix+"cart"]) == "" {
		t.Fatalf("X-Session-Expire: cart=60 = %v, %v", p, err)
	}
	names := expiredNames(s.values, now)
	if len(names) != 2 {
		t.Fatalf("expiredNames = %v, want promo and its expiry", names)
	}
	for _, bad := range []string{"promo", "promo=-1", "1promo=3", "promo=1h"} {
		if _, err := expirePatch([]string{bad}, s, now); err == nil {
			t.Errorf("X-Session-Expire: %s: no error", bad)
		}
	}
}
