package memory

import "time"

// sweepEvery removes expired sessions every interval until Close.
func (s *Store) sweepEvery(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep()
		}
	}
}

// sweep removes every expired session, one shard at a time so that a
// request waits for at most one shard's scan.
func (s *Store) sweep() {
	for i := range s.shards {
		sh := &s.shards[i]
		now := s.now().UnixNano()
		sh.mu.Lock()
		for _, e := range sh.m {
			if !e.live(now) {
				s.remove(sh, e)
			}
		}
		for _, e := range sh.overflow {
			if !e.live(now) {
				s.remove(sh, e)
			}
		}
		sh.shrink()
		sh.mu.Unlock()
	}
}

// shrink rebuilds the shard's main map (locked) once it holds a quarter of what
// it once did: Go maps never give back the memory of deleted entries, so
// after a traffic peak the table would otherwise stay at its peak size.
func (sh *shard) shrink() {
	const minPeak = 1024 // not worth it for small maps
	if sh.peak < minPeak || len(sh.m) > sh.peak/4 {
		return
	}
	m := make(map[uint64]*entry, len(sh.m))
	for k, e := range sh.m {
		m[k] = e
	}
	sh.m = m
	sh.peak = len(m)
}
