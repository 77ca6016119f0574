package testkit

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// postgresBinDirs returns where Debian puts PostgreSQL's server programs,
// which are not in PATH there (/usr/lib/postgresql/<version>/bin), newest
// version first.
func postgresBinDirs() []string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
		return v
	}
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	return dirs
}

// PostgresBinDir returns the directory holding initdb and postgres: the
// one of initdb in PATH, else Debian's. It skips the test when there is
// none (fails it when CI is set; see Missing).
func PostgresBinDir(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		if dir := filepath.Dir(p); isExecutable(filepath.Join(dir, "postgres")) {
			return dir
		}
	}
	for _, dir := range postgresBinDirs() {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir
		}
	}
	Missing(t, "initdb is not installed (PostgreSQL's server: apt-get install postgresql; Debian puts it in /usr/lib/postgresql/<version>/bin): the PostgreSQL tests need it")
	return ""
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Postgres is one PostgreSQL server of a test: a fresh cluster (initdb) in
// a temp dir, listening on a spare loopback port and on a Unix socket in
// that dir, trust authentication for the superuser "postgres" and a
// database "postgres". initdb and postgres refuse to run as root: as root
// they run as the OS user postgres, which owns the dir.
type Postgres struct {
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Dir holds the data directory (Dir/data) and the socket.
	Dir string
	// BinDir holds the server's programs.
	BinDir string

	cred *syscall.Credential // the postgres OS user, when root
	args []string            // the server's arguments, for Start
	proc process
	logs Buffer
}

// StartPostgres creates a cluster, starts PostgreSQL on it and waits until
// it accepts connections; the server is stopped when the test ends. extra
// are server settings ("-c", "name=value"…) after the kit's own.
func StartPostgres(t testing.TB, extra ...string) *Postgres {
	t.Helper()
	binDir := PostgresBinDir(t)
	p := &Postgres{BinDir: binDir, Dir: t.TempDir()}
	// The server's user must be able to reach its dir: t.TempDir's parent
	// is private to root.
	if err := os.Chmod(filepath.Dir(p.Dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := p.asOwner(); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(p.Dir, "data")
	out, err := p.command(filepath.Join(binDir, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C").CombinedOutput()
	if err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	var lastErr error
	for range 5 {
		p.Port = FreePort(t)
		args := []string{"-D", data, "-p", strconv.Itoa(p.Port), "-k", p.Dir,
			"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off",
			"-c", "synchronous_commit=off"}
		p.args = append(args, extra...)
		if lastErr = p.start(p.args); lastErr == nil {
			t.Cleanup(p.Stop)
			return p
		}
	}
	t.Fatalf("starting postgres: %v", lastErr)
	return nil
}

// asOwner gives p.Dir to the postgres OS user when the test runs as root,
// and remembers that user for command.
func (p *Postgres) asOwner() error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("running as root, PostgreSQL needs the OS user postgres to run as: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	return os.Chown(p.Dir, uid, gid)
}

// command runs a PostgreSQL program, as the postgres OS user when the test
// runs as root: what `runuser -u postgres --` does, without a wrapper
// process in between, so that signals and the parent-death signal reach
// the server itself.
func (p *Postgres) command(prog string, args ...string) *exec.Cmd {
	cmd := exec.Command(prog, args...)
	cmd.Dir = p.Dir
	if p.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
		cmd.Env = append(os.Environ(), "HOME="+p.Dir, "USER=postgres", "LOGNAME=postgres")
	}
	return cmd
}

func (p *Postgres) start(args []string) error {
	cmd := p.command(filepath.Join(p.BinDir, "postgres"), args...)
	// A process group of its own, so that Kill reaches the backends,
	// the checkpointer and the WAL writer too, as a crash of the host
	// would.
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.Stdout, cmd.Stderr = &p.logs, &p.logs
	mark := p.logs.Len()
	if err := p.proc.start(cmd); err != nil {
		return err
	}
	err := p.proc.waitFor(30*time.Second, func() error {
		if !strings.Contains(p.logs.Since(mark), "ready to accept connections") {
			return errors.New("postgres has not logged \"ready to accept connections\"")
		}
		conn, err := net.DialTimeout("tcp", p.Addr(), 200*time.Millisecond)
		if err == nil {
			conn.Close()
		}
		return err
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errExited):
		return fmt.Errorf("postgres exited at start (port %d taken?): %s", p.Port, LastLines(p.logs.Since(mark), 5))
	default:
		return fmt.Errorf("postgres on port %d: %w: %s", p.Port, err, LastLines(p.logs.Since(mark), 5))
	}
}

// Addr returns the server's host:port.
func (p *Postgres) Addr() string { return "127.0.0.1:" + strconv.Itoa(p.Port) }

// URL returns a postgres:// URL for the superuser and database postgres.
func (p *Postgres) URL() string {
	return "postgres://postgres@" + p.Addr() + "/postgres?sslmode=disable"
}

// Logs returns what the server wrote.
func (p *Postgres) Logs() string { return p.logs.String() }

// Stop shuts the server down fast (SIGINT: abort transactions, exit
// cleanly), with SIGKILL after 10 seconds. Stopping a stopped server does
// nothing.
func (p *Postgres) Stop() { p.proc.stop(&sigINT, 10*time.Second) }

// Kill ends the server at once, as a crash would: SIGKILL to the
// postmaster and to every process it started (backends, checkpointer, WAL
// writer), so that nothing is flushed on the way out. What PostgreSQL had
// not written to its WAL files is lost; what it had survives (the kernel
// keeps it even with fsync off). Kill returns once every one of those
// processes has exited (a SIGKILLed process with much memory to free can
// take a moment), or after 10 seconds. Killing a stopped server does
// nothing.
func (p *Postgres) Kill() {
	children, _ := p.signal(syscall.SIGKILL)
	p.proc.stop(nil, 0)
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range children {
		for !exited(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// Signal sends sig to the postmaster and to every process it started
// (SIGSTOP and SIGCONT freeze and resume the whole server, as a VM pause
// would). PostgreSQL puts each child in a process group of its own, so the
// children are found by their parent (on Linux; elsewhere only the
// postmaster's group is signalled). The postmaster is stopped first, so
// that it forks none meanwhile; for SIGKILL, it dies last, so that its
// children are still its own when they are listed.
func (p *Postgres) Signal(sig syscall.Signal) error {
	_, err := p.signal(sig)
	return err
}

// signal is Signal, and returns the children it signalled.
func (p *Postgres) signal(sig syscall.Signal) ([]int, error) {
	p.proc.mu.Lock()
	defer p.proc.mu.Unlock()
	if p.proc.cmd == nil {
		return nil, errors.New("not running")
	}
	pid := p.proc.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return nil, err
	}
	children := childPIDs(pid)
	for _, child := range children {
		_ = syscall.Kill(child, sig)
	}
	if err := syscall.Kill(-pid, sig); err != nil {
		return children, err
	}
	if sig != syscall.SIGSTOP && sig != syscall.SIGKILL {
		return children, syscall.Kill(pid, syscall.SIGCONT)
	}
	return children, nil
}

// Start starts a killed or stopped server again on the same port, data
// directory and settings; PostgreSQL recovers from its WAL first. It
// retries for a few seconds while the port or the old server's shared
// memory is not free yet.
func (p *Postgres) Start() error {
	var err error
	for range 50 {
		if err = p.start(p.args); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("restarting postgres on port %d: %w", p.Port, err)
}

// Psql runs SQL with psql over the Unix socket as the superuser and
// returns its output (unaligned, tuples only).
func (p *Postgres) Psql(sql string) (string, error) {
	cmd := p.command(filepath.Join(p.BinDir, "psql"), "-h", p.Dir, "-p", strconv.Itoa(p.Port),
		"-U", "postgres", "-d", "postgres", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
