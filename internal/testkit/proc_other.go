//go:build !linux

package testkit

import "os/exec"

// dieWithParent does nothing here: only Linux ties a child's life to its
// parent's. Cleanup still stops the processes on a normal exit.
func dieWithParent(*exec.Cmd) {}

// childPIDs finds no children here: Kill and Signal reach the server's
// process group only.
func childPIDs(int) []int { return nil }

// exited reports true here: with no children listed, there is nothing to
// wait for.
func exited(int) bool { return true }
