//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly || illumos)

package file

import "os"

// crossProcess reports whether lockFile excludes other processes. Here it
// does not: on this platform, share a directory with one process only.
const crossProcess = false

// lockFile does nothing on platforms without flock(2); the per-folder
// mutex still serializes the writers of this process.
func lockFile(*os.File) error { return nil }
