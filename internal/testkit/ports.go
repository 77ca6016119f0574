package testkit

import (
	"errors"
	"fmt"
	"math/rand/v2"
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
		p, err := candidatePort()
		if err != nil {
			return 0, nil, err
		}
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

// portFloor is the lowest port handed out below the ephemeral range.
const portFloor = 20000

// candidatePort returns a loopback TCP port free at this moment. It is
// taken below the kernel's ephemeral range when there is room there: a port
// from that range can be taken, between the check and the server's bind,
// as the source port of any outgoing connection on the machine, which is
// how a test once failed with "address already in use".
func candidatePort() (int, error) {
	if hi := ephemeralLow() - 1; hi-portFloor >= 1000 {
		return freePortIn(portFloor, hi)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// freePortIn returns a port in [lo, hi] that a loopback listener could bind
// a moment ago.
func freePortIn(lo, hi int) (int, error) {
	var last error
	for range 100 {
		p := lo + rand.IntN(hi-lo+1)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			last = err
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, fmt.Errorf("no free port in %d-%d: %w", lo, hi, last)
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// where it cannot be read), read once.
var ephemeralLow = sync.OnceValue(func() int {
	var lo, hi int
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
		return 32768
	}
	return lo
})

// FreePort returns a loopback TCP port that was free a moment ago and that
// no other test, of this process or of another one, holds until the test
// ends. A port found free may still be taken since (by another program,
// or as a connection's source port where the machine leaves no room below
// the ephemeral range): the starters below
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
