package browser

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes the kernel kill Caddy when the test binary dies (a
// test timeout, a ^C), so no Caddy outlives the tests.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
