//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly || illumos)

package file

import "os"

// fileID identifies one version of a file.
type fileID struct{}

// identity reports that this platform offers no reliable file identity:
// every read goes to the file.
func identity(os.FileInfo) (fileID, bool) { return fileID{}, false }
