package storage

import (
	"testing"
	"time"
)

// TestExpiresOf: the expiry a write gives, confirmed or new, by the idle
// timeout, the deadline and the new-session TTL, whichever comes first.
func TestExpiresOf(t *testing.T) {
	created := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	deadline := created.Add(24 * time.Hour)
	at := func(d time.Duration) time.Time { return created.Add(d) }
	cases := []struct {
		name      string
		now       time.Duration // after created
		idle, ttl time.Duration
		isNew     bool
		want      time.Duration // after created
	}{
		{"confirmed, no idle timeout: the deadline", 0, 0, time.Hour, false, 24 * time.Hour},
		{"confirmed, idle timeout", time.Hour, 30 * time.Minute, time.Hour, false, 90 * time.Minute},
		{"confirmed, idle timeout past the deadline", 23 * time.Hour, 2 * time.Hour, time.Hour, false, 24 * time.Hour},
		{"new, no idle timeout: created + TTL", 0, 0, time.Hour, true, time.Hour},
		{"new, written later: still created + TTL", 50 * time.Minute, 30 * time.Minute, time.Hour, true, time.Hour},
		{"new, idle timeout first", 0, 10 * time.Minute, time.Hour, true, 10 * time.Minute},
		{"new, no TTL: as confirmed", 0, 10 * time.Minute, 0, true, 10 * time.Minute},
		{"new, TTL past the deadline: the deadline", 0, 0, 48 * time.Hour, true, 24 * time.Hour},
	}
	for _, c := range cases {
		o := MergeOptions{Now: at(c.now), IdleTimeout: c.idle, NewTTL: c.ttl}
		if got := o.ExpiresOf(created, deadline, c.isNew); !got.Equal(at(c.want)) {
			t.Errorf("%s: ExpiresOf = created + %s, want created + %s", c.name, got.Sub(created), c.want)
		}
	}
}

func TestCountsTotal(t *testing.T) {
	if got := (Counts{New: 2, Confirmed: 3}).Total(); got != 5 {
		t.Fatalf("Total = %d, want 5", got)
	}
}

// TestRecordLive: a record is served before both its expiry and its
// deadline, never at or after either.
func TestRecordLive(t *testing.T) {
	now := time.Now()
	r := &Record{Expires: now.Add(time.Second), Deadline: now.Add(time.Hour)}
	if !r.Live(now) || r.Live(now.Add(time.Second)) {
		t.Fatal("Live must hold before Expires and end at it")
	}
	r = &Record{Expires: now.Add(time.Hour), Deadline: now.Add(time.Second)}
	if r.Live(now.Add(time.Second)) {
		t.Fatal("Live must end at the Deadline even when Expires is later")
	}
	if (*Record)(nil).Live(now) {
		t.Fatal("a nil record is not live")
	}
}
