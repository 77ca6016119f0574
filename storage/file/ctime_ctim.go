//go:build linux || illumos

package file

import "syscall"

// ctime returns a file's change time.
func ctime(st *syscall.Stat_t) (sec, nsec int64) {
	return int64(st.Ctim.Sec), int64(st.Ctim.Nsec)
}
