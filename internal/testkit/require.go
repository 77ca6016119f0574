package testkit

import (
	"os"
	"os/exec"
	"testing"
)

// Missing skips the test with msg, or fails it when the environment
// variable CI is set: CI must run every test, so a tool missing there is a
// broken image, not a reason to skip.
func Missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI is set, so this is a failure, not a skip)")
	}
	t.Skip(msg)
}

// LookPath returns the path of the program name, or calls Missing with
// msg when it is not in PATH.
func LookPath(t testing.TB, name, msg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		Missing(t, msg)
	}
	return path
}
