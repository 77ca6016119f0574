package testkit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// modulePath is the module whose tree the kit builds from.
const modulePath = "github.com/caddy-session/caddy-session"

// DefaultCaddy is the main package of the Caddy that the tests drive:
// Caddy's standard modules plus the session module.
const DefaultCaddy = "./cmd/caddy"

// RaceEnv names the environment variable that, set to 1, builds the Caddy
// binaries with the race detector (-race). CI sets it, so the gateway runs
// under the race detector while the tests drive it.
const RaceEnv = "CADDY_SESSION_RACE"

// Race reports whether RaceEnv asks for race-enabled Caddy binaries.
func Race() bool { return os.Getenv(RaceEnv) == "1" }

// ModuleRoot returns the directory of the module's go.mod, found from the
// working directory (a test runs in its package's directory) upwards.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module "+modulePath+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working directory", modulePath)
		}
		dir = parent
	}
}

type build struct {
	once sync.Once
	path string
	err  error
}

var (
	buildsMu sync.Mutex
	builds   = map[string]*build{}
)

// BuildCaddy builds the main package pkg of the module ("./cmd/caddy", or
// an example's own command) and returns the binary's path. It builds once
// per test process; test binaries running at the same time share one
// binary per tree, package and build mode (a lock file makes them take
// turns, and `go build` does not link again a binary that is up to date),
// so `go test ./...` links Caddy once rather than once per package. With
// CADDY_SESSION_RACE=1 the binary is built with -race. TestMain calls it
// before the tests' timeout starts; a test calls CaddyBinary.
func BuildCaddy(pkg string) (string, error) {
	key := pkg
	if Race() {
		key += " -race"
	}
	buildsMu.Lock()
	b := builds[key]
	if b == nil {
		b = &build{}
		builds[key] = b
	}
	buildsMu.Unlock()
	b.once.Do(func() { b.path, b.err = buildCaddy(pkg) })
	return b.path, b.err
}

func buildCaddy(pkg string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(root + "\x00" + pkg))
	name := strings.Trim(strings.NewReplacer("/", "-", ".", "").Replace(pkg), "-")
	if Race() {
		name += "-race"
	}
	dir := filepath.Join(os.TempDir(), "caddy-session-testkit-bin", hex.EncodeToString(sum[:6])+"-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	bin := filepath.Join(dir, "caddy")
	args := []string{"build", "-o", bin}
	if Race() {
		args = append(args, "-race")
	}
	args = append(args, pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	out, err := exec.Command(bin, "list-modules").CombinedOutput()
	switch {
	case err != nil:
		return "", fmt.Errorf("caddy list-modules: %v\n%s", err, out)
	case !bytes.Contains(out, []byte("http.handlers.session")):
		return "", errors.New("the Caddy built from " + pkg + " does not list http.handlers.session (is caddymodule blank-imported?)")
	}
	return bin, nil
}

// CaddyBinary returns the Caddy built from pkg (DefaultCaddy when empty),
// building it on first use; a failed build fails the test.
func CaddyBinary(t testing.TB, pkg string) string {
	t.Helper()
	if pkg == "" {
		pkg = DefaultCaddy
	}
	bin, err := BuildCaddy(pkg)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// MustBuildCaddy is for TestMain, before the tests' timeout starts: it
// returns the Caddy built from pkg (see BuildCaddy), or prints why there
// is none, prefixed with the test package's name, and exits with status 1.
func MustBuildCaddy(name, pkg string) string {
	bin, err := BuildCaddy(pkg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	return bin
}
