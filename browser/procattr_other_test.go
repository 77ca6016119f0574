//go:build !linux

package browser

import "os/exec"

// setProcAttr does nothing here: only Linux has Pdeathsig.
func setProcAttr(cmd *exec.Cmd) {}
