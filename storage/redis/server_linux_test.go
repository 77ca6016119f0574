package redis

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes the kernel kill a test server when the test binary
// dies (a panic, a -timeout), so that no redis-server outlives a CI run.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
