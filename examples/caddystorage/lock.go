package caddystorage

import (
	"context"
	"slices"
	"time"

	"go.uber.org/zap"
)

// lockWait bounds how long a write waits for its session's lock before it
// fails with storage.ErrUnavailable (a 503), so a request never hangs on a
// lock held by a stalled instance. certmagic's file storage polls a held
// lock once a second, so this leaves room for one or two polls.
const lockWait = 2 * time.Second

// stripes serialize this process's goroutines per key before they take the
// storage lock, which excludes other instances: a goroutine waiting on a
// channel costs less than one polling a lock file (certmagic's Locker is
// meant for rare, coarse work, not for two tabs writing at once). They are
// shared by every Store of the process, so that the old and new configs of
// a reload queue here too. A channel, not a mutex, so that the wait obeys
// the context.
var stripes = func() (s [256]chan struct{}) {
	for i := range s {
		s[i] = make(chan struct{}, 1)
	}
	return s
}()

// stripe returns the stripe of a valid key: its first byte.
func stripe(key string) int {
	return hexVal(key[0])<<4 | hexVal(key[1])
}

func hexVal(c byte) int {
	if c <= '9' {
		return int(c - '0')
	}
	return int(c-'a') + 10
}

// lockName is the name of a session's lock in the storage's Locker.
func (s *Store) lockName(key string) string {
	return s.prefix + "/" + key + ".lock"
}

// lock takes the locks of keys (one, or two for Rotate): first this
// process's stripes, then the storage locks, each in ascending order, so
// that two Rotates of the same pair, here or on another instance, cannot
// deadlock. It gives up after lockWait.
func (s *Store) lock(ctx context.Context, keys ...string) (unlock func(), err error) {
	ctx, cancel := context.WithTimeout(ctx, lockWait)
	defer cancel()

	keys = slices.Clone(keys)
	slices.Sort(keys)
	keys = slices.Compact(keys)
	var idx []int
	for _, k := range keys {
		idx = append(idx, stripe(k))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)

	var held []int
	var locked []string
	release := func() {
		// Unlock even when the caller's context is done: a lock left
		// behind blocks the session until the storage deems it stale.
		uctx := context.WithoutCancel(ctx)
		for i := len(locked) - 1; i >= 0; i-- {
			if err := s.storage.Unlock(uctx, locked[i]); err != nil {
				s.logger.Error("could not release a session lock in Caddy's storage",
					zap.String("lock", locked[i]), zap.Error(err))
			}
		}
		for i := len(held) - 1; i >= 0; i-- {
			<-stripes[held[i]]
		}
	}
	for _, i := range idx {
		select {
		case stripes[i] <- struct{}{}:
			held = append(held, i)
		case <-ctx.Done():
			release()
			return nil, unavailable("wait for the session's lock", ctx.Err())
		}
	}
	for _, k := range keys {
		name := s.lockName(k)
		if err := s.storage.Lock(ctx, name); err != nil {
			release()
			return nil, unavailable("lock session in Caddy's storage", err)
		}
		locked = append(locked, name)
	}
	return release, nil
}
