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
		for _, r := range sh.m {
			if !sh.entries[r].live(now) {
				s.remove(sh, r)
			}
		}
		for _, r := range sh.overflow {
			if !sh.entries[r].live(now) {
				s.remove(sh, r)
			}
		}
		for k, until := range sh.tombs {
			if now >= until {
				delete(sh.tombs, k)
			}
		}
		if len(sh.tombs) == 0 {
			sh.tombs = nil // a map keeps its peak size: let it go
		}
		sh.shrink()
		sh.mu.Unlock()
	}
}

// shrink rebuilds the shard (locked) once it holds a quarter of what it
// once did: Go maps never give back the memory of deleted entries, nor
// arrays their capacity, so after a traffic peak the shard would otherwise
// stay at its peak size. The entries move to new slots, in the same order
// in each list; refs are the shard's own business, so nothing else changes.
func (sh *shard) shrink() {
	const minPeak = 1024 // not worth it for small shards
	slots := len(sh.entries) - int(firstRef)
	if max(sh.peak, slots) < minPeak || sh.len() > max(sh.peak, slots)/4 {
		return
	}
	n := sh.len()
	entries, data := sh.entries, sh.data
	sh.m = make(map[uint64]ref, n)
	sh.overflow = nil
	sh.initArrays(n)
	sh.peak = 0
	// Each list from its last entry to its first: each goes to the front.
	for _, list := range []ref{confirmedList, newList} {
		for r := entries[list].prev; r != list; r = entries[r].prev {
			e := entries[r]
			e.prev, e.next = 0, 0
			sh.add(e, data[r])
		}
	}
}
