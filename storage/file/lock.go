package file

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// lockName is the file in each subfolder that writers lock. It is never
// removed: removing a lock file while another process waits on it would
// let two processes hold "the" lock at once.
const lockName = ".lock"

// lock takes the write lock of one subfolder: this process's mutex, then
// the folder's file lock against other processes. It creates the subfolder
// if needed. The returned func releases both.
func (s *Store) lock(shard int) (func(), error) {
	s.mu[shard].Lock()
	f, err := s.openLockFile(shard)
	if err == nil {
		err = lockFileFunc(f)
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		s.mu[shard].Unlock()
		return nil, unavailable("lock folder", err)
	}
	return func() {
		// Closing the file releases the file lock.
		f.Close()
		s.mu[shard].Unlock()
	}, nil
}

// lockFileFunc is lockFile, replaced in a test that shows what the file
// lock prevents.
var lockFileFunc = lockFile

// lockPair locks two subfolders in a fixed order (lower number first), in
// every process, so that two Rotates in opposite directions cannot
// deadlock.
func (s *Store) lockPair(a, b int) (func(), error) {
	if a == b {
		return s.lock(a)
	}
	if a > b {
		a, b = b, a
	}
	unlockA, err := s.lock(a)
	if err != nil {
		return nil, err
	}
	unlockB, err := s.lock(b)
	if err != nil {
		unlockA()
		return nil, err
	}
	return func() {
		unlockB()
		unlockA()
	}, nil
}

// openLockFile opens a subfolder's lock file, creating the subfolder and
// the file as needed.
func (s *Store) openLockFile(shard int) (*os.File, error) {
	dir := filepath.Join(s.dir, fmt.Sprintf("%02x", shard))
	name := filepath.Join(dir, lockName)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		// The new subfolder must survive a power loss with the files
		// about to be written into it.
		if err := syncDir(s.dir); err != nil {
			return nil, err
		}
		f, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	}
	return f, err
}
