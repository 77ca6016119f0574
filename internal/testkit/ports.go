package testkit

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

// portLockDir holds one lock file per port handed out, so that test
// processes running at the same time never share a port: Caddy binds with
// SO_REUSEPORT, so a shared port would not fail, it would split the
// traffic.
var portLockDir = filepath.Join(os.TempDir(), "caddy-session-test-ports")

// reserved are ports never handed out: Caddy's default admin port and
// Redis's and PostgreSQL's defaults, which the machine's own servers may
// use (the kernel hands out ephemeral ports well above them anyway).
var reserved = map[int]bool{2019: true, 5432: true, 6379: true}

// ReservePort returns a loopback TCP port that was free a moment ago and
// that no other caller, in this process or in another one, holds until
// release is called. It is for ports that outlive one test; tests use
// FreePort.
func ReservePort() (port int, release func(), err error) {
	if err := os.MkdirAll(portLockDir, 0o777); err != nil {
		return 0, nil, err
	}
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, nil, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		portsMu.Lock()
		dup := ports[p]
		ports[p] = true
		portsMu.Unlock()
		if dup || reserved[p] {
			continue
		}
		f, err := os.OpenFile(filepath.Join(portLockDir, strconv.Itoa(p)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			return 0, nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		return p, func() { f.Close() }, nil
	}
	return 0, nil, errors.New("no free port")
}

// FreePort returns a loopback TCP port that was free a moment ago and that
// no other test, of this process or of another one, holds until the test
// ends. A port found free may still be taken since (as the source port of
// some connection, or by another program's probe): the starters below
// retry on new ports when a server could not bind.
func FreePort(t testing.TB) int {
	t.Helper()
	p, release, err := ReservePort()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return p
}
