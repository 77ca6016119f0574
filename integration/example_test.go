package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// twoGatewayExample is one of the examples/*-two-instances Caddyfiles: two
// gateways (:<gateA>, :<gateB>) in one Caddy in front of one shop
// (:<shop>), sharing a store.
type twoGatewayExample struct {
	dir                string   // under examples/
	gateA, gateB, shop int      // the ports the example uses
	env                []string // for caddy validate and run
	replace            []string // further old, new pairs (the store's address)
	forbidden          string   // a port the running test must never use
}

// exampleShop is the pair of gateways a test drives, and a check of the
// storefront's page.
type exampleShop struct {
	a, b *Caddy
}

// page fails the test unless r's body holds each of want.
func (exampleShop) page(t testing.TB, r *Resp, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(string(r.Body), w) {
			t.Fatalf("want %q in the storefront's page:\n%s", w, r)
		}
	}
}

// run checks the example as it ships (a README, it adapts, it is
// formatted), then runs it on spare ports with an admin endpoint and
// storage of the test's own, and waits for both gateways.
func (e twoGatewayExample) run(t *testing.T) exampleShop {
	t.Helper()
	example, err := filepath.Abs(filepath.Join("..", "examples", e.dir, "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	srcBytes, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	src := string(srcBytes)
	if _, err := os.Stat(filepath.Join(filepath.Dir(example), "README.md")); err != nil {
		t.Errorf("the example lacks its README.md: %v", err)
	}
	dir := t.TempDir()
	out, err := runCaddy(t, dir, nil, "adapt", "--config", example, "--adapter", "caddyfile")
	if err != nil {
		t.Fatalf("caddy adapt %s: %v\n%s", example, err, out)
	}
	if strings.Contains(out, "not formatted") {
		t.Errorf("the example Caddyfile is not formatted (caddy fmt --overwrite fixes it):\n%s", out)
	}

	var gb int
	a := untilBound(t, func(int) (a *Caddy, ok bool) {
		a, gb, ok = e.start(t, dir, src)
		return a, ok
	})
	b := &Caddy{Host: fmt.Sprintf("127.0.0.1:%d", gb)}
	b.Base = "http://" + b.Host
	for range 100 { // the same process; wait for its other listener too
		if _, err := b.DoErr(Req{Path: "/"}); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return exampleShop{a: a, b: b}
}

// start writes the example with its ports replaced by spare ones into dir,
// validates it and runs it. It returns the first gateway, the second
// gateway's port, and false when a port was taken before Caddy bound it.
func (e twoGatewayExample) start(t *testing.T, dir, src string) (*Caddy, int, bool) {
	t.Helper()
	ga, gb, shop, admin := freePort(t), freePort(t), freePort(t), freePort(t)
	reps := []string{
		"\tauto_https off\n", fmt.Sprintf("\tauto_https off\n\tadmin localhost:%d\n\tstorage file_system %s\n\tdefault_bind 127.0.0.1\n\tgrace_period 1s\n", admin, filepath.Join(dir, "storage")),
		fmt.Sprintf("\n:%d {", e.gateA), fmt.Sprintf("\n:%d {", ga),
		fmt.Sprintf("\n:%d {", e.gateB), fmt.Sprintf("\n:%d {", gb),
		fmt.Sprintf("\n:%d {", e.shop), fmt.Sprintf("\n:%d {", shop),
		fmt.Sprintf("127.0.0.1:%d", e.shop), fmt.Sprintf("127.0.0.1:%d", shop),
	}
	reps = append(reps, e.replace...)
	for i := 0; i < len(reps); i += 2 {
		if !strings.Contains(src, reps[i]) {
			t.Fatalf("the example Caddyfile no longer contains %q: update this test with it", reps[i])
		}
		src = strings.ReplaceAll(src, reps[i], reps[i+1])
	}
	for _, line := range strings.Split(src, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") && strings.Contains(line, e.forbidden) {
			t.Fatalf("the example names port %s outside a comment after substitution (%q); the test must never use the machine's server", e.forbidden, line)
		}
	}
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runCaddy(t, dir, e.env, "validate", "--config", path, "--adapter", "caddyfile"); err != nil {
		t.Fatalf("caddy validate (example on test ports): %v\n%s", err, out)
	}
	a, ok := tryRunConfig(t, dir, path, ga, admin, e.env)
	return a, gb, ok
}
