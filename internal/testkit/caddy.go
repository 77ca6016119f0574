package testkit

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ErrPortTaken is what Caddy.WaitReady returns when Caddy exited because
// one of its ports was taken: the caller picks new ports and starts again.
var ErrPortTaken = errors.New("caddy could not bind a port: address already in use")

// ErrTimedOut is wrapped by RunCaddy's error when the subcommand did not
// finish in time.
var ErrTimedOut = errors.New("did not finish in time")

// ErrBadOutput is wrapped by RunCaddy's error when the subcommand printed
// a data race or a panic (see CheckOutput).
var ErrBadOutput = errors.New("the output shows a data race or a panic")

// Caddy is one Caddy process driven by a test: `caddy run` on a config file
// (Caddyfile or JSON), with its own home directory, its output collected.
// Fill the exported fields, write the config (WriteConfig), then Start.
type Caddy struct {
	// Bin is the Caddy binary (see BuildCaddy).
	Bin string
	// Dir is the process's directory: its HOME and XDG directories are
	// under Dir/home, so that no test reads or writes the user's Caddy
	// data.
	Dir string
	// ConfigPath is the config file.
	ConfigPath string
	// Adapter is the config's adapter: "caddyfile", or "" for a JSON
	// config (name the file *.json).
	Adapter string
	// AdminPort is the port of the admin endpoint the config sets
	// (admin localhost:<port>, or "admin": {"listen": ...} in JSON):
	// readiness and reload go through it.
	AdminPort int
	// Env holds extra environment variables (KEY=value).
	Env []string
	// StartTimeout bounds a start; zero means 20 seconds.
	StartTimeout time.Duration
	// Ready, when set, is one more readiness check after the admin
	// endpoint answers (a site serves what it should, say); Start retries
	// it until StartTimeout.
	Ready func() error

	proc process
	mark int // where the current process's output starts
	logs Buffer
}

// NewCaddy returns a Caddy of bin in a new directory of the test, with an
// admin port of its own, stopped when the test ends; at that point the
// test fails if Caddy printed a data race or a Go panic, and Caddy's
// output is logged when the test failed. Write a config naming AdminPort,
// then Start.
func NewCaddy(t testing.TB, bin string) *Caddy {
	t.Helper()
	dir := t.TempDir()
	c := &Caddy{
		Bin:        bin,
		Dir:        dir,
		ConfigPath: filepath.Join(dir, "Caddyfile"),
		Adapter:    "caddyfile",
		AdminPort:  FreePort(t),
	}
	c.Watch(t)
	return c
}

// Watch stops c when the test ends, fails the test when Caddy's output
// shows a data race or a Go panic, and logs the config and the output when
// the test failed.
func (c *Caddy) Watch(t testing.TB) {
	t.Cleanup(func() {
		c.Stop()
		if err := c.Check(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			cfg, _ := os.ReadFile(c.ConfigPath)
			t.Logf("Caddy config (%s):\n%s\nCaddy output:\n%s", c.ConfigPath, cfg, c.Logs())
		}
	})
}

// Check returns an error when Caddy's output so far shows a data race
// (the binary was built with -race) or a Go panic or fatal error.
func (c *Caddy) Check() error {
	return CheckOutput("Caddy", c.Logs())
}

// CheckOutput returns an error when a Go program's output shows a data
// race reported by the race detector, a panic (recovered by net/http or
// not) or a fatal runtime error; it quotes the first report.
func CheckOutput(name, out string) error {
	for _, m := range []struct{ marker, what string }{
		{"WARNING: DATA RACE", "a data race"},
		{"panic serving", "a panic serving a request"},
		{"panic:", "a panic"},
		{"fatal error:", "a fatal runtime error"},
	} {
		if i := strings.Index(out, m.marker); i >= 0 {
			end := min(len(out), i+6000)
			return fmt.Errorf("the %s process reported %s:\n%s", name, m.what, out[i:end])
		}
	}
	return nil
}

// WriteConfig writes the config file.
func (c *Caddy) WriteConfig(src string) error {
	return os.WriteFile(c.ConfigPath, []byte(src), 0o600)
}

// Config returns the config file's content.
func (c *Caddy) Config() string {
	b, _ := os.ReadFile(c.ConfigPath)
	return string(b)
}

// AdminAddr is the admin endpoint's address, localhost:<AdminPort>.
func (c *Caddy) AdminAddr() string { return fmt.Sprintf("localhost:%d", c.AdminPort) }

// Environ returns the environment of the process and of Run: the test's,
// a home under Dir, and Env.
func (c *Caddy) Environ() []string {
	return CaddyEnv(c.Dir, c.Env)
}

// CaddyEnv is the environment of a Caddy process whose home is under dir:
// the test's own, HOME and XDG directories under dir/home, then extra.
func CaddyEnv(dir string, extra []string) []string {
	env := append(os.Environ(),
		"HOME="+filepath.Join(dir, "home"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "home", "config"),
		"XDG_DATA_HOME="+filepath.Join(dir, "home", "data"),
	)
	return append(env, extra...)
}

func (c *Caddy) configArgs() []string {
	args := []string{"--config", c.ConfigPath}
	if c.Adapter != "" {
		args = append(args, "--adapter", c.Adapter)
	}
	return args
}

// Launch starts `caddy run` without waiting; WaitReady waits. Starting
// several processes, then waiting for each, starts them side by side.
func (c *Caddy) Launch() error {
	cmd := exec.Command(c.Bin, append([]string{"run"}, c.configArgs()...)...)
	cmd.Env = c.Environ()
	cmd.Stdout, cmd.Stderr = &c.logs, &c.logs
	c.mark = c.logs.Len()
	return c.proc.start(cmd)
}

// WaitReady waits until the launched process serves: it said so ("serving
// initial configuration", which Caddy logs once every app started, its
// listeners bound) and its admin endpoint answers (proof that the port is
// this Caddy's, not a probe of some other test), then Ready passes. It
// returns ErrPortTaken when Caddy exited because a port was taken, and
// another error when it exited for another reason or did not get ready in
// time (the process is then killed).
func (c *Caddy) WaitReady() error {
	timeout := c.StartTimeout
	if timeout == 0 {
		timeout = 20 * time.Second
	}
	mark := c.mark
	err := c.proc.waitFor(timeout, func() error {
		if !strings.Contains(c.logs.Since(mark), "serving initial configuration") {
			return errors.New("caddy has not logged \"serving initial configuration\"")
		}
		if err := AdminUp(c.AdminAddr()); err != nil {
			return fmt.Errorf("admin endpoint %s: %w", c.AdminAddr(), err)
		}
		if c.Ready != nil {
			return c.Ready()
		}
		return nil
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errExited) && strings.Contains(c.logs.Since(mark), "address already in use"):
		return ErrPortTaken
	case errors.Is(err, errExited):
		return fmt.Errorf("caddy exited before serving:\n%s", c.Logs())
	default:
		return fmt.Errorf("caddy: %w:\n%s", err, c.Logs())
	}
}

// AdminUp returns nil when the Caddy admin endpoint at addr (host:port)
// answers GET /config/ with 200.
func AdminUp(addr string) error {
	client := http.Client{Timeout: 500 * time.Millisecond}
	resp, err := client.Get("http://" + addr + "/config/")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /config/: %s", resp.Status)
	}
	return nil
}

// Start launches Caddy and waits until it is ready (see WaitReady).
func (c *Caddy) Start() error {
	if err := c.Launch(); err != nil {
		return err
	}
	return c.WaitReady()
}

// Running reports whether the process runs.
func (c *Caddy) Running() bool { return c.proc.running() }

// Stop ends the process gracefully: SIGTERM, then SIGKILL when it has not
// exited within 5 seconds. Stopping a stopped Caddy does nothing.
func (c *Caddy) Stop() { c.proc.stop(&sigTERM, 5*time.Second) }

// Kill ends the process at once with SIGKILL, as a crash would.
func (c *Caddy) Kill() { c.proc.stop(nil, 0) }

// Restart stops Caddy (gracefully, or with SIGKILL when kill is set) and
// starts it again on the same config, retrying for a few seconds while
// its ports are not free again yet.
func (c *Caddy) Restart(kill bool) error {
	if kill {
		c.Kill()
	} else {
		c.Stop()
	}
	var err error
	for range 10 {
		if err = c.Start(); !errors.Is(err, ErrPortTaken) {
			return err
		}
		time.Sleep(300 * time.Millisecond)
	}
	return fmt.Errorf("caddy could not bind its ports again: %w", err)
}

// Reload loads the config file, as it is now, into the running Caddy
// with `caddy reload --force` through the admin endpoint.
func (c *Caddy) Reload() error {
	args := append([]string{"reload"}, c.configArgs()...)
	args = append(args, "--address", c.AdminAddr(), "--force")
	stdout, stderr, err := c.Run(60*time.Second, args...)
	if err != nil {
		return fmt.Errorf("caddy reload: %v\n%s%s", err, stdout, stderr)
	}
	return nil
}

// Run runs a caddy subcommand (validate, adapt, reload…) in c's
// environment and returns its standard output and standard error. A
// subcommand still running after timeout is killed, with an error.
func (c *Caddy) Run(timeout time.Duration, args ...string) (stdout, stderr string, err error) {
	return RunCaddy(c.Bin, c.Dir, c.Env, timeout, args...)
}

// RunCaddy runs a caddy subcommand of bin with its home under dir and extra
// environment, and returns its standard output and standard error. A
// subcommand still running after timeout is killed, with an error that
// wraps ErrTimedOut; one whose output shows a data race or a panic returns
// an error that wraps ErrBadOutput.
func RunCaddy(bin, dir string, env []string, timeout time.Duration, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = CaddyEnv(dir, env)
	var out, errOut Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return "", "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-done
		err = fmt.Errorf("caddy %s: %w (%v)", strings.Join(args, " "), ErrTimedOut, timeout)
	}
	if cerr := CheckOutput("caddy "+strings.Join(args, " "), out.String()+errOut.String()); cerr != nil {
		err = fmt.Errorf("%w: %v", ErrBadOutput, cerr)
	}
	return out.String(), errOut.String(), err
}

// Logs returns everything Caddy wrote so far, across restarts.
func (c *Caddy) Logs() string { return c.logs.String() }

// Mark returns the current end of the logs, for LogsSince.
func (c *Caddy) Mark() int { return c.logs.Len() }

// LogsSince returns what Caddy wrote after mark.
func (c *Caddy) LogsSince(mark int) string { return c.logs.Since(mark) }
