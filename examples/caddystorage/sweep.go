package caddystorage

import (
	"context"
	"errors"
	"io/fs"
	"path"
	"strings"
	"time"

	"go.uber.org/zap"
)

// sweepInterval is how often the Caddy module sweeps. Expired records are
// never served either way: sweeping frees space, so it need not be often.
const sweepInterval = 5 * time.Minute

// Sweep removes every record under the prefix that has expired or does not
// decode, and returns how many it removed. Each is read again under its
// lock before it goes, so a session written meanwhile stays. Entries that
// are not session records (other files sharing the prefix) are left alone.
// Several instances may sweep the same storage at once.
func (s *Store) Sweep(ctx context.Context) (removed int, err error) {
	names, err := s.storage.List(ctx, s.prefix, false)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil // nothing stored yet
	}
	if err != nil {
		return 0, unavailable("list session records", err)
	}
	now := time.Now()
	for _, name := range names {
		key, ok := strings.CutSuffix(path.Base(name), ".json")
		if !ok || validKey(key) != nil {
			continue
		}
		rec, present, rerr := s.read(ctx, key)
		if rerr == nil && (!present || rec.unexpired(now)) {
			continue
		}
		if rerr == nil {
			rerr = s.removeDead(ctx, key)
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return removed, ctx.Err()
			}
			err = errors.Join(err, rerr)
			continue
		}
		removed++
	}
	return removed, err
}

// sweepEvery runs Sweep every interval until ctx ends, then closes done.
// The first sweep comes after one interval, so that `caddy validate`, which
// provisions and cleans up at once, never writes to the storage.
func (s *Store) sweepEvery(ctx context.Context, interval time.Duration, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := s.Sweep(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.logger.Error("sweeping expired sessions from Caddy's storage", zap.Int("removed", n), zap.Error(err))
		case n > 0:
			s.logger.Debug("swept expired sessions from Caddy's storage", zap.Int("removed", n))
		}
	}
}
