package redis

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// The merge script re-implements storage.Apply in Lua so that a write is
// one round trip. This differential test feeds both the same random
// sessions and patches, with names drawn from a small set of spellings
// that collide as headers, and requires the same verdict: the same values,
// or the same *LimitError, or a *KeyError naming a real collision.
func TestMergeScriptMatchesApply(t *testing.T) {
	t.Parallel() // mostly waiting on servers
	srv := standalone(t)
	s := newStore(t, Config{Addresses: []string{srv.Addr()}})
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"a", "A", "b", "cart-id", "cart_id", "Cart-Id", "x1", "x_1", "long_name_here", "z"}
	value := func() json.RawMessage {
		switch rng.IntN(6) {
		case 0:
			return nil // delete
		case 1:
			return json.RawMessage(`null`)
		case 2:
			return json.RawMessage(fmt.Sprint(rng.IntN(1000)))
		case 3:
			return json.RawMessage(`{"k": [1, 2, "three"]}`) // not compact: counted as is
		default:
			return json.RawMessage(`"` + strings.Repeat("é", rng.IntN(20)) + `"`)
		}
	}
	patchOf := func() map[string]json.RawMessage {
		p := make(map[string]json.RawMessage)
		for range rng.IntN(5) {
			p[names[rng.IntN(len(names))]] = value()
		}
		return p
	}

	counts := map[string]int{}
	for i := range 400 {
		// A valid current session, built by Apply itself.
		current, err := storage.Apply(nil, patchOf(), storage.Limits{})
		if err != nil {
			continue
		}
		key := storage.Key(fmt.Sprint("apply-", i))
		now := time.Now()
		opts := storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour)}
		if _, err := s.Merge(ctx, key, current, opts); err != nil {
			t.Fatalf("storing a valid session %v: %v", current, err)
		}

		patch := patchOf()
		limits := storage.Limits{MaxKeys: 1 + rng.IntN(6), MaxSize: 10 + rng.IntN(150)}
		if rng.IntN(4) == 0 {
			limits = storage.Limits{} // the defaults
		}
		opts.Limits = limits
		want, wantErr := storage.Apply(current, patch, limits)
		got, gotErr := s.Merge(ctx, key, patch, opts)

		var wantKE, gotKE *storage.KeyError
		var wantLE, gotLE *storage.LimitError
		switch {
		case wantErr == nil:
			counts["merged"]++
			if gotErr != nil {
				t.Fatalf("case %d: Apply(%v, %v, %+v) merged, the script refused: %v", i, current, patch, limits, gotErr)
			}
			if !maps.EqualFunc(got.Values, want, func(a, b json.RawMessage) bool { return string(a) == string(b) }) {
				t.Fatalf("case %d: script gave %v, Apply %v", i, got.Values, want)
			}
		case errors.As(wantErr, &wantLE):
			counts["limit "+wantLE.What]++
			if !errors.As(gotErr, &gotLE) || *gotLE != *wantLE {
				t.Fatalf("case %d: Apply(%v, %v, %+v) = %v, the script %v", i, current, patch, limits, wantErr, gotErr)
			}
		case errors.As(wantErr, &wantKE):
			counts["collision"]++
			if !errors.As(gotErr, &gotKE) {
				t.Fatalf("case %d: Apply(%v, %v) = %v, the script %v", i, current, patch, wantErr, gotErr)
			}
			// With several collisions either may be named; the pair
			// must be real.
			_, inPatch := patch[gotKE.Key]
			if !inPatch || gotKE.Key == gotKE.Other || storage.HeaderKey(gotKE.Key) != storage.HeaderKey(gotKE.Other) {
				t.Fatalf("case %d: script's %v names no collision of %v into %v", i, gotKE, patch, current)
			}
		default:
			t.Fatalf("case %d: unexpected Apply error %v", i, wantErr)
		}
		if wantErr != nil {
			// Refused: the stored session is unchanged.
			rec, err := s.Load(ctx, key)
			if err != nil || !maps.EqualFunc(rec.Values, current, func(a, b json.RawMessage) bool { return string(a) == string(b) }) {
				t.Fatalf("case %d: after a refused merge the session is %v, %v; want %v", i, rec, err, current)
			}
		}
	}
	t.Logf("verdicts: %v", counts)
	for _, v := range []string{"merged", "collision", "limit keys", "limit size"} {
		if counts[v] == 0 {
			t.Errorf("no case ended %q: the generator needs adjusting", v)
		}
	}
}
