//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly || illumos

package file

import (
	"os"
	"syscall"
)

// fileID identifies one version of a file.
type fileID struct {
	dev, ino uint64
	ctimeSec int64
	ctimeNs  int64
	size     int64
}

// identity returns the identity of the file fi describes.
func identity(fi os.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	sec, nsec := ctime(st)
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino), ctimeSec: sec, ctimeNs: nsec, size: st.Size}, true
}
