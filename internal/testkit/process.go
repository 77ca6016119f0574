package testkit

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// errExited is what process.waitFor returns when the process ended before
// it was ready.
var errExited = errors.New("the process exited")

// process is the life of one child process at a time: start, wait until
// ready, signal, stop. The servers of the kit are built on it.
type process struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// start starts cmd, to be killed by the kernel if the test binary dies.
func (p *process) start(cmd *exec.Cmd) error {
	dieWithParent(cmd)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return errors.New("already running")
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.cmd, p.done = cmd, done
	return nil
}

// waitFor calls ready every 20 to 30 ms until it returns nil, the process
// exits (errExited) or timeout passes (the process is then killed, and
// the error says what ready said last).
func (p *process) waitFor(timeout time.Duration, ready func() error) error {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return errors.New("not running")
	}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-done:
			p.mu.Lock()
			if p.done == done {
				p.cmd, p.done = nil, nil
			}
			p.mu.Unlock()
			return errExited
		default:
		}
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			p.stop(nil, 0)
			return fmt.Errorf("not ready within %v: %w", timeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// running reports whether the process runs.
func (p *process) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// signal sends sig to the process.
func (p *process) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return errors.New("not running")
	}
	return p.cmd.Process.Signal(sig)
}

// stop sends sig (none when nil) and waits up to grace for the process to
// exit, then kills it (a stopped process too) and waits. Stopping a
// stopped process does nothing.
func (p *process) stop(sig *syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd, p.done = nil, nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	if sig != nil {
		_ = cmd.Process.Signal(*sig)
		select {
		case <-done:
			return
		case <-time.After(grace):
		}
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Kill()
	<-done
}

// sigTERM and sigINT are stop's graceful signals.
var sigTERM, sigINT = syscall.SIGTERM, syscall.SIGINT

// StartProgram runs cmd, a program of the test that serves on addr (an
// upstream written in another language, say), and waits until addr
// accepts connections. The program is killed when the test ends, and its
// output, returned, is logged when the test failed. A program that exits
// or does not listen within timeout fails the test.
func StartProgram(t testing.TB, cmd *exec.Cmd, addr string, timeout time.Duration) *Buffer {
	t.Helper()
	out := new(Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	var p process
	if err := p.start(cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stop(nil, 0)
		if t.Failed() {
			t.Logf("%s output:\n%s", cmd.Path, out.String())
		}
	})
	err := p.waitFor(timeout, func() error {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
		}
		return err
	})
	switch {
	case errors.Is(err, errExited):
		t.Fatalf("%s exited at start:\n%s", cmd.Path, out.String())
	case err != nil:
		t.Fatalf("%s did not listen on %s: %v\n%s", cmd.Path, addr, err, out.String())
	}
	return out
}
