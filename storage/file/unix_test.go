//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly || illumos

package file

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

func TestPermissions(t *testing.T) {
	// With no umask, the modes are the store's own choice.
	old := syscall.Umask(0)
	defer syscall.Umask(old)

	dir := filepath.Join(t.TempDir(), "parent", "sessions")
	s := newTestStore(t, dir, Options{})
	key := storage.Key("perm")
	create(t, s, key, map[string]json.RawMessage{"a": json.RawMessage(`1`)})
	if err := s.Touch(ctx, key, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	p, _ := s.path(key)
	want := map[string]fs.FileMode{
		dir:                            0o700 | fs.ModeDir,
		filepath.Dir(dir):              0o700 | fs.ModeDir,
		p.dir:                          0o700 | fs.ModeDir,
		p.file:                         0o600,
		filepath.Join(p.dir, lockName): 0o600,
	}
	for path, mode := range want {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
		}
	}
	// The file name is the key, not the ID.
	if filepath.Base(p.file) != key {
		t.Errorf("file %s is not named by the key", p.file)
	}
}

// Child processes: the test binary runs itself with one of these set.
const (
	crashChildEnv  = "FILESTORE_CRASH_CHILD"  // directory to write to until killed
	writerChildEnv = "FILESTORE_WRITER_CHILD" // directory,id,count
	noLockEnv      = "FILESTORE_NO_FLOCK"     // disable the file lock
)

// crash test sessions: steady gets merges only, so its counter only grows;
// dancer is rotated away and back; flicker is deleted and re-created.
var (
	steady  = storage.Key("crash-steady")
	dancer  = storage.Key("crash-dancer")
	partner = storage.Key("crash-dancer-elsewhere")
	flicker = storage.Key("crash-flicker")
)

var bigLimits = storage.Limits{MaxKeys: 1000, MaxSize: 1 << 20}

// crashValues returns a session whose parts check each other: payload is
// derived from n, and sum is its hash, so a file mixing two writes or cut
// short shows.
func crashValues(n int, size int) map[string]json.RawMessage {
	payload := strings.Repeat(fmt.Sprintf("%d.", n), size/(len(fmt.Sprint(n))+1)+1)
	sum := sha256.Sum256([]byte(payload))
	return map[string]json.RawMessage{
		"n":       json.RawMessage(strconv.Itoa(n)),
		"payload": json.RawMessage(`"` + payload + `"`),
		"sum":     json.RawMessage(`"` + hex.EncodeToString(sum[:]) + `"`),
	}
}

// checkCrashValues verifies a record written by crashValues, returning n.
func checkCrashValues(rec *storage.Record) (int, error) {
	var n int
	var payload, sum string
	if json.Unmarshal(rec.Values["n"], &n) != nil || json.Unmarshal(rec.Values["payload"], &payload) != nil || json.Unmarshal(rec.Values["sum"], &sum) != nil {
		return 0, fmt.Errorf("session lacks n, payload or sum: %d values", len(rec.Values))
	}
	got := sha256.Sum256([]byte(payload))
	if hex.EncodeToString(got[:]) != sum || !strings.HasPrefix(payload, fmt.Sprintf("%d.", n)) {
		return 0, fmt.Errorf("session n=%d: payload (%d bytes) does not match its sum: a torn write was served", n, len(payload))
	}
	return n, nil
}

// TestCrashChild writes to the crash sessions until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("runs only as a child of TestCrashSafety")
	}
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "CHILD FAILURE: "+format+"\n", args...)
		os.Exit(3)
	}
	s, err := New(dir, Options{SweepInterval: -1, OnCorrupt: func(path string, err error) {
		fail("corrupt file %s: %v", path, err)
	}})
	if err != nil {
		fail("New: %v", err)
	}
	// Finish a rotation a kill interrupted.
	if _, err := s.Load(ctx, dancer); errors.Is(err, storage.ErrNotFound) {
		if err := s.Rotate(ctx, partner, dancer); err != nil && !errors.Is(err, storage.ErrNotFound) {
			fail("Rotate back: %v", err)
		}
	}
	fmt.Println("ready")
	for i := 0; ; i++ {
		for _, key := range []string{steady, dancer, flicker} {
			n := 0
			rec, err := s.Load(ctx, key)
			switch {
			case err == nil:
				if n, err = checkCrashValues(rec); err != nil {
					fail("%v", err)
				}
			case !errors.Is(err, storage.ErrNotFound):
				fail("Load: %v", err)
			}
			now := time.Now()
			if _, err := s.Merge(ctx, key, crashValues(n+1, rand.IntN(200<<10)), storage.MergeOptions{
				Create: true, Now: now, Deadline: now.Add(time.Hour), IdleTimeout: 10 * time.Minute, Limits: bigLimits,
			}); err != nil {
				fail("Merge: %v", err)
			}
		}
		if err := s.Touch(ctx, steady, time.Now().Add(20*time.Minute)); err != nil {
			fail("Touch: %v", err)
		}
		if i%3 == 0 {
			if err := s.Delete(ctx, flicker); err != nil {
				fail("Delete: %v", err)
			}
		}
		if i%2 == 0 {
			if err := s.Rotate(ctx, dancer, partner); err != nil {
				fail("Rotate: %v", err)
			}
			if err := s.Rotate(ctx, partner, dancer); err != nil {
				fail("Rotate back: %v", err)
			}
		}
	}
}

// TestCrashSafety kills a writer with SIGKILL at random points, 30 times,
// and checks after each kill that every file in the directory is whole or
// ignored: Load never fails other than ErrNotFound, never serves a torn
// write, never loses what a finished write stored, and the lock is free.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 30 processes")
	}
	dir := t.TempDir()
	var corrupt []string
	s := newTestStore(t, dir, Options{SweepInterval: -1, TempMaxAge: time.Nanosecond, OnCorrupt: func(path string, err error) {
		corrupt = append(corrupt, fmt.Sprintf("%s: %v", path, err))
	}})
	lastSteady := 0
	tempsSeen := map[string]bool{} // leftovers of kills mid-write
	for kill := range 30 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(stdout)
			ready <- sc.Scan() && sc.Text() == "ready"
			for sc.Scan() {
			}
		}()
		select {
		case ok := <-ready:
			if !ok {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("kill %d: child did not start: %s", kill, stderr.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("kill %d: child not ready after 30s: %s", kill, stderr.String())
		}
		time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		err = cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("kill %d: child ended with %v, not by our SIGKILL:\n%s", kill, err, stderr.String())
		}

		// Every session file decodes whole, or is ignored; none is torn.
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			name := d.Name()
			switch {
			case strings.HasPrefix(name, tempPrefix):
				tempsSeen[path] = true
			case validKey(name):
				rec, err := s.Load(ctx, name)
				if err != nil && !errors.Is(err, storage.ErrNotFound) {
					t.Errorf("kill %d: Load of %s: %v", kill, name, err)
				}
				if err == nil {
					if _, err := checkCrashValues(rec); err != nil {
						t.Errorf("kill %d: %s: %v", kill, name, err)
					}
				}
			}
			return nil
		})

		// No finished write is lost: the steady counter never goes back.
		if rec, err := s.Load(ctx, steady); err == nil {
			n, _ := checkCrashValues(rec)
			if n < lastSteady {
				t.Errorf("kill %d: steady session went back from n=%d to n=%d", kill, lastSteady, n)
			}
			lastSteady = n
		} else if lastSteady > 0 {
			t.Errorf("kill %d: steady session lost: %v", kill, err)
		}
		// The dancing session is under one of its two keys (or none yet).
		_, e1 := s.Load(ctx, dancer)
		_, e2 := s.Load(ctx, partner)
		if e1 == nil && e2 == nil {
			t.Errorf("kill %d: a rotated session is under both keys", kill)
		}
		if t.Failed() {
			t.Fatalf("child's last words:\n%s", stderr.String())
		}
	}

	if len(corrupt) > 0 {
		t.Fatalf("corrupt files after the kills:\n%s", strings.Join(corrupt, "\n"))
	}
	if lastSteady == 0 {
		t.Fatal("no child ever finished a write: the kills came too early to test anything")
	}
	t.Logf("30 kills: steady session at n=%d; %d leftover temp files seen (kills mid-write)", lastSteady, len(tempsSeen))

	// The locks are free (the kernel released the dead children's), and the
	// sweeper clears what the crashes left.
	done := make(chan error, 1)
	go func() {
		_, err := s.Merge(ctx, steady, map[string]json.RawMessage{"after": json.RawMessage(`1`)}, storage.MergeOptions{Now: time.Now(), Limits: bigLimits})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Merge after the kills: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Merge after the kills still waiting for a lock after 10s")
	}
	s.sweep()
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tempPrefix) {
			t.Errorf("sweep left temp file %s", path)
		}
		return nil
	})
}

// TestWriterChild merges count keys of its own into one session.
func TestWriterChild(t *testing.T) {
	spec := os.Getenv(writerChildEnv)
	if spec == "" {
		t.Skip("runs only as a child of TestCrossProcessWriters")
	}
	parts := strings.Split(spec, ",")
	dir, id := parts[0], parts[1]
	count, _ := strconv.Atoi(parts[2])
	if os.Getenv(noLockEnv) != "" {
		lockFileFunc = func(*os.File) error { return nil }
	}
	s, err := New(dir, Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	for !exists(filepath.Join(dir, "go")) {
		time.Sleep(time.Millisecond)
	}
	if err := mergeKeys(s, id, count); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

var sharedSession = storage.Key("shared by processes")

// mergeKeys merges keys <id>_0 ... <id>_<count-1> into sharedSession, one
// write each.
func mergeKeys(s *Store, id string, count int) error {
	for i := range count {
		now := time.Now()
		_, err := s.Merge(ctx, sharedSession, map[string]json.RawMessage{
			fmt.Sprintf("%s_%d", id, i): json.RawMessage(`1`),
		}, storage.MergeOptions{Create: true, Now: now, Deadline: now.Add(time.Hour), Limits: bigLimits})
		if err != nil {
			return err
		}
	}
	return nil
}

// runWriters runs children writers and this process's own, all on one
// session at once, and returns how many keys the session lost.
func runWriters(t *testing.T, locked bool) (lost int) {
	const children, count = 3, 40
	dir := t.TempDir()
	if !locked {
		lockFileFunc = func(*os.File) error { return nil }
		defer func() { lockFileFunc = lockFile }()
	}
	s := newTestStore(t, dir, Options{SweepInterval: -1})
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for c := range children {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWriterChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,c%d,%d", writerChildEnv, dir, c, count))
		if !locked {
			cmd.Env = append(cmd.Env, noLockEnv+"=1")
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		out := &strings.Builder{}
		cmd.Stderr = out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		if !sc.Scan() || sc.Text() != "ready" {
			cmd.Wait()
			t.Fatalf("writer %d did not start: %s", c, out)
		}
		go func() {
			for sc.Scan() {
				out.WriteString(sc.Text() + "\n")
			}
		}()
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := mergeKeys(s, "parent", count); err != nil {
			t.Error(err)
		}
	}()
	for c, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer %d: %v\n%s", c, err, outs[c])
		}
	}
	wg.Wait()

	rec, err := s.Load(ctx, sharedSession)
	if err != nil {
		t.Fatal(err)
	}
	return (children+1)*count - len(rec.Values)
}

// TestCrossProcessWriters: writers in four processes merge different keys
// into one session at once, and every key survives. Without the file lock
// (the control), keys are lost: the test can tell.
func TestCrossProcessWriters(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	if lost := runWriters(t, true); lost != 0 {
		t.Fatalf("%d keys lost by writers in several processes", lost)
	}
	t.Run("control without the file lock", func(t *testing.T) {
		lost := runWriters(t, false)
		t.Logf("without the file lock, %d keys were lost", lost)
		if lost == 0 {
			t.Fatal("no key was lost without the file lock: this test cannot tell whether the lock works")
		}
	})
}
