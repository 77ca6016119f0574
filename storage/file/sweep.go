package file

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// sweepEvery runs sweep every interval until Close.
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

// sweep removes expired and corrupt session files, and temporary files
// older than TempMaxAge. It lists each subfolder without a lock, and takes
// the subfolder's lock only to re-read and remove the files whose
// modification time (set to their expiry on every write) has passed, so
// writers rarely wait for it.
func (s *Store) sweep() {
	now := s.opts.Now()
	top, err := os.ReadDir(s.dir)
	if err != nil {
		return // the next sweep tries again; requests report the cause
	}
	for _, d := range top {
		name := d.Name()
		switch {
		case strings.HasPrefix(name, tempPrefix):
			s.removeStaleTemp(filepath.Join(s.dir, name), now)
		case d.IsDir() && len(name) == 2 && validHex(name):
			s.sweepShard(name, now)
		}
		select {
		case <-s.stop:
			return // Close need not wait for a whole sweep
		default:
		}
	}
}

func (s *Store) sweepShard(shard string, now time.Time) {
	dir := filepath.Join(s.dir, shard)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	var due []string
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, tempPrefix):
			s.removeStaleTemp(filepath.Join(dir, name), now)
		case strings.HasSuffix(name, tombSuffix) && validKey(strings.TrimSuffix(name, tombSuffix)):
			if info, err := e.Info(); err == nil && !info.ModTime().After(now) {
				os.Remove(filepath.Join(dir, name))
			}
		case validKey(name) && name[:2] == shard:
			info, err := e.Info()
			if err == nil && info.ModTime().After(now) {
				continue // not expired yet, by its modification time
			}
			due = append(due, name)
		}
		// Anything else (.lock, files an operator put here) is left alone.
	}
	if len(due) == 0 {
		return
	}
	p, err := s.path(due[0])
	if err != nil {
		return
	}
	unlock, err := s.lock(p.shard)
	if err != nil {
		return
	}
	defer unlock()
	for _, name := range due {
		p, _ := s.path(name)
		// read reports and removes a corrupt file itself.
		st, err := s.read(p, true)
		if err == nil && st.Record != nil && !st.Live(now) {
			os.Remove(p.file)
		}
	}
}

// removeStaleTemp removes a temporary file old enough to be a crash's
// leftover rather than a write in progress.
func (s *Store) removeStaleTemp(path string, now time.Time) {
	info, err := os.Lstat(path)
	if err != nil || now.Sub(info.ModTime()) < s.opts.TempMaxAge {
		return
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return
	}
}

// validHex reports whether s is lowercase hex digits.
func validHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
