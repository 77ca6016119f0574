package file

import (
	"os"
	"time"
)

// tombSuffix names the marker Rotate leaves next to the file it moved a
// session away from: <key>.rotated, an empty file whose modification time
// is when the store stops remembering the rotation (see
// storage.ErrRotated). The sweeper removes it once that time has passed.
const tombSuffix = ".rotated"

// markRotated leaves the marker of a rotation away from p, until until.
// A marker that cannot be written is no error: the key then reads as
// missing, not rotated.
func (s *Store) markRotated(p paths, until time.Time) {
	name := p.file + tombSuffix
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return
	}
	f.Close()
	_ = os.Chtimes(name, until, until)
}

// rotatedAway reports whether Rotate moved the session of p away less
// than storage.RotationGrace ago.
func (s *Store) rotatedAway(p paths) bool {
	fi, err := os.Stat(p.file + tombSuffix)
	return err == nil && fi.ModTime().After(s.opts.Now())
}
