package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-session/caddy-session/cookie"
)

func TestParseMaxAgeHeader(t *testing.T) {
	limit := 400 * 24 * time.Hour
	tests := []struct {
		values  []string
		want    maxAgeRequest
		wantErr string
	}{
		{[]string{"31536000"}, maxAgeRequest{life: 365 * 24 * time.Hour}, ""},
		{[]string{" 3600 "}, maxAgeRequest{life: time.Hour}, ""},
		{[]string{"1"}, maxAgeRequest{life: time.Second}, ""},
		{[]string{"session"}, maxAgeRequest{browser: true}, ""},
		{[]string{"Session"}, maxAgeRequest{browser: true}, ""},
		{[]string{"34560000"}, maxAgeRequest{life: limit}, ""},
		{[]string{"34560001"}, maxAgeRequest{life: limit, clamped: true}, ""},
		{[]string{"99999999999999999999999"}, maxAgeRequest{life: limit, clamped: true}, ""},
		{[]string{"0"}, maxAgeRequest{}, "X-Session-Destroy"},
		{[]string{"000"}, maxAgeRequest{}, "X-Session-Destroy"},
		{[]string{"-5"}, maxAgeRequest{}, "whole number"},
		{[]string{"+5"}, maxAgeRequest{}, "whole number"},
		{[]string{"1e6"}, maxAgeRequest{}, "whole number"},
		{[]string{"3600.5"}, maxAgeRequest{}, "whole number"},
		{[]string{"1h"}, maxAgeRequest{}, "whole number"},
		{[]string{""}, maxAgeRequest{}, "whole number"},
		{[]string{"3600, 7200"}, maxAgeRequest{}, "whole number"},
		{[]string{"3600", "7200"}, maxAgeRequest{}, "2 values"},
		{[]string{"sessions"}, maxAgeRequest{}, "whole number"},
	}
	for _, tt := range tests {
		got, err := parseMaxAgeHeader(tt.values, limit)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: err %v, want one containing %q", tt.values, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q = %+v, %v; want %+v", tt.values, got, err, tt.want)
		}
	}
}

func TestProvisionMaxAgeLimit(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		limit, maxAge time.Duration
		want          time.Duration
		wantErr       string
	}{
		{0, 30 * day, DefaultMaxAgeLimit, ""},
		{0, 500 * day, 500 * day, ""},
		{90 * day, 30 * day, 90 * day, ""},
		{30 * day, 30 * day, 30 * day, ""},
		{7 * day, 30 * day, 0, "below the cookie's max_age"},
		{time.Millisecond, time.Millisecond, 0, "at least 1s"},
	}
	for _, tt := range tests {
		h := &Handler{MaxAgeLimit: caddy.Duration(tt.limit), opts: cookie.Options{MaxAge: tt.maxAge}}
		err := h.provisionMaxAgeLimit()
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("limit %s, max_age %s: err %v, want %q", tt.limit, tt.maxAge, err, tt.wantErr)
			}
			continue
		}
		if err != nil || h.maxAgeLimit != tt.want {
			t.Errorf("limit %s, max_age %s: %s, %v; want %s", tt.limit, tt.maxAge, h.maxAgeLimit, err, tt.want)
		}
	}
}

// TestDeadlineCap: a session the upstream never gave a lifetime is held
// to max_age from its creation; one it did, to max_age_limit from then;
// both to the cookie's fixed expires.
func TestDeadlineCap(t *testing.T) {
	created := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	set := created.Add(10 * 24 * time.Hour)
	h := &Handler{opts: cookie.Options{MaxAge: time.Hour}, maxAgeLimit: 48 * time.Hour}
	if got := h.deadlineCap(created, time.Time{}); !got.Equal(created.Add(time.Hour)) {
		t.Errorf("no lifetime set: %s", got)
	}
	if got := h.deadlineCap(created, set); !got.Equal(set.Add(48 * time.Hour)) {
		t.Errorf("lifetime set: %s", got)
	}
	h.opts.Expires = set.Add(time.Hour)
	if got := h.deadlineCap(created, set); !got.Equal(h.opts.Expires) {
		t.Errorf("with a fixed expires: %s", got)
	}
}

// TestServerCookieValue: a server store's cookie holds the bare ID (the
// form every earlier version wrote and reads) until the upstream sets a
// lifetime; both forms read back.
func TestServerCookieValue(t *testing.T) {
	id := cookie.NewID()
	s := &session{id: id}
	b, _ := json.Marshal(serverCookieValue(s))
	if want, _ := json.Marshal(id); string(b) != string(want) {
		t.Fatalf("plain session: %s, want the bare ID %s", b, want)
	}
	var c serverCookie
	if err := json.Unmarshal(b, &c); err != nil || c != (serverCookie{ID: id}) {
		t.Fatalf("bare ID reads as %+v, %v", c, err)
	}

	set := time.UnixMilli(time.Now().UnixMilli())
	s.browser, s.lifeSet = true, set
	b, _ = json.Marshal(serverCookieValue(s))
	c = serverCookie{ID: "stale"}
	if err := json.Unmarshal(b, &c); err != nil || c.ID != id || !c.Browser || !unixMilliOrZero(c.LifeSet).Equal(set) {
		t.Fatalf("%s reads as %+v, %v", b, c, err)
	}
	// A cookie-store cookie (same name and secrets: previous_store cookie)
	// holds an object with an "i" too: it must not read as a server ID.
	store, _ := json.Marshal(cookiePayload{ID: id, Values: map[string]json.RawMessage{"a": []byte("1")}, Created: 1, Deadline: 2, Seen: 1})
	for _, bad := range []string{`42`, `{"i":1}`, `"x`, string(store)} {
		if err := json.Unmarshal([]byte(bad), &c); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
