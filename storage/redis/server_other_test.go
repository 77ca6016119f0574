//go:build !linux

package redis

import "os/exec"

// dieWithTest does nothing here: only Linux can tie a child's life to its
// parent's. Cleanup still kills the servers on a normal exit.
func dieWithTest(*exec.Cmd) {}
