//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly || illumos

package file

import (
	"os"
	"syscall"
)

// crossProcess reports whether lockFile excludes other processes.
const crossProcess = true

// lockFile takes an exclusive flock(2) on f, waiting for it. The kernel
// releases it when f is closed, also when the process dies: a writer
// killed with -9 never leaves a folder locked.
func lockFile(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			return err
		}
	}
}
