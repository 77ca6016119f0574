//go:build unix

package redis

import "syscall"

// unread reports whether the socket fd holds bytes not read yet (or cannot
// tell): a non-blocking peek at one byte.
func unread(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	// EAGAIN: nothing to read. Anything else is data, the end of the
	// stream (which the reader will see, turning the cache off) or an
	// error: not quiet.
	return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK
}
