package file

import (
	"fmt"
	"path/filepath"
)

// paths locates one session's file.
type paths struct {
	shard int    // subfolder number, 0-255: key[:2] read as hex
	dir   string // <dir>/<key[:2]>
	file  string // <dir>/<key[:2]>/<key>
}

// keyLen is the length of a storage.Key: SHA-256 in hex.
const keyLen = 64

// validKey reports whether key has the shape of a storage.Key. Only such
// keys become file names: nothing else (a raw session ID by mistake, a
// "../") can reach the filesystem.
func validKey(key string) bool {
	if len(key) != keyLen {
		return false
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// path returns where the session under key lives. The error names the
// key's length, never the key: a caller that passes a session ID by
// mistake must not get it logged.
func (s *Store) path(key string) (paths, error) {
	if !validKey(key) {
		return paths{}, fmt.Errorf("session file store: invalid key (%d characters): want the 64 lowercase hex digits of storage.Key(id), never a raw session ID", len(key))
	}
	dir := filepath.Join(s.dir, key[:2])
	return paths{
		shard: hexVal(key[0])<<4 | hexVal(key[1]),
		dir:   dir,
		file:  filepath.Join(dir, key),
	}, nil
}

func hexVal(c byte) int {
	if c <= '9' {
		return int(c - '0')
	}
	return int(c-'a') + 10
}
