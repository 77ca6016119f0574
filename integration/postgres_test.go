package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/internal/testkit"
)

// The PostgreSQL store end to end: real Caddy processes and a real
// PostgreSQL (Debian's postgresql package) that the test kit starts on a
// spare loopback port, in the test's temp dir, never the machine's own
// server on 5432. Without initdb the tests skip (fail when CI is set).
// Wall-clock bounds are generous (postgresFaultBound) and only catch
// hangs; the measured times are logged (-v).

// postgresFaultBound is the most any request may take while PostgreSQL is
// down: the store's timeout (500ms by default) is well under it.
const postgresFaultBound = 2 * time.Second

// postgresSession is a session block body with a PostgreSQL store at dsn
// and extra lines (each gets a tab).
func postgresSession(dsn string, extra ...string) string {
	lines := append([]string{"secret " + secretA, "store postgres " + dsn}, extra...)
	return "\t" + strings.Join(lines, "\n\t")
}

// postgresBackends returns the PIDs of the client connections to p other
// than psql's own.
func postgresBackends(t testing.TB, p *testkit.Postgres) map[string]bool {
	t.Helper()
	out, err := p.Psql("select pid from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()")
	if err != nil {
		t.Fatalf("pg_stat_activity: %v: %s", err, out)
	}
	pids := map[string]bool{}
	for _, pid := range strings.Fields(out) {
		pids[pid] = true
	}
	return pids
}

// postgresRows returns how many rows the sessions table holds.
func postgresRows(t testing.TB, p *testkit.Postgres, table string) int {
	t.Helper()
	// Sessions, not the tombstones Rotate leaves for storage.RotationGrace.
	out, err := p.Psql("select count(*) from " + table + " where not rotated")
	if err != nil {
		t.Fatalf("counting rows: %v: %s", err, out)
	}
	n, err := strconv.Atoi(out)
	if err != nil {
		t.Fatalf("count(*): %q", out)
	}
	return n
}

// TestPostgresTwoInstances: two Caddy instances on one database share
// their sessions: created through A's API and A's upstream, read through
// B's upstream and API, changed through B, seen through A; the admin API
// of either counts them and logs a customer out everywhere, for both. The
// table holds neither the cookie nor the session ID.
func TestPostgresTwoInstances(t *testing.T) {
	t.Parallel()
	pg := testkit.StartPostgres(t)
	session := postgresSession(pg.URL(), "client_writable theme", "index_key customerId")
	cs := StartCaddies(t, CaddyOpts{Session: session}, CaddyOpts{Session: session})
	a, b := cs[0], cs[1]
	jar := NewJar()
	viaA, viaB := &Browser{C: a, Jar: jar}, &Browser{C: b, Jar: jar}

	// Created through A's API, then A's upstream adds a key.
	r := viaA.API(t, "POST", `{"theme":"dark"}`)
	wantObject(t, r, http.StatusOK, `{"theme":"dark"}`)
	if len(setCookieFor(r, "__session")) != 1 {
		t.Fatalf("the write that creates the session must set its cookie; got %q", r.SetCookies())
	}
	viaA.Seed(t, `{"customerId":"c_42"}`)
	if n := postgresRows(t, pg, "caddy_sessions"); n != 1 {
		t.Fatalf("the table holds %d rows, want the one session", n)
	}

	// Read through B.
	viaB.Get(t, "/page")
	wantSessionHeaders(t, b.Up.Last(t), map[string]string{"X-Session-Theme": "dark", "X-Session-Customerid": "c_42"})
	wantObject(t, viaB.API(t, "GET", ""), http.StatusOK, `{"theme":"dark"}`)

	// Changed through B (API and upstream), seen through A.
	wantObject(t, viaB.API(t, "POST", `{"theme":"light"}`), http.StatusOK, `{"theme":"light"}`)
	viaB.Seed(t, `{"cart":"c-1"}`)
	viaA.Get(t, "/page")
	wantSessionHeaders(t, a.Up.Last(t), map[string]string{"X-Session-Theme": "light", "X-Session-Customerid": "c_42", "X-Session-Cart": "c-1"})

	// What the table holds: no cookie value, no session ID.
	dump, err := pg.Psql("select key || ' ' || vals from caddy_sessions")
	if err != nil {
		t.Fatal(err)
	}
	value := jar.Get("__session")
	for _, n := range append(redisChunks(value), redisChunks(redisSessionID(t, value))...) {
		if strings.Contains(dump, n) {
			t.Fatalf("the sessions table holds a piece of the cookie or session ID (%q)", n)
		}
	}

	// A second visitor, another customer, through B.
	other := b.NewBrowser()
	other.Seed(t, `{"customerId":"c_7"}`)

	// The admin API of either instance counts the sessions of the one
	// database; logout-everywhere through B ends c_42's session for A too.
	for name, c := range map[string]*Caddy{"A": a, "B": b} {
		if code, m := adminGet(t, c, "/session/__session/count"); code != http.StatusOK || m["sessions"] != 2.0 {
			t.Errorf("count through %s: %d %v, want 2 sessions", name, code, m)
		}
	}
	code, m := adminPost(t, b, "/session/__session/logout-everywhere", `{"value":"c_42"}`)
	if code != http.StatusOK || m["destroyed"] != 1.0 {
		t.Fatalf("logout-everywhere through B: %d %v, want 1 destroyed", code, m)
	}
	wantObject(t, viaA.API(t, "GET", ""), http.StatusOK, `{}`)
	viaA.Get(t, "/page")
	noSessionHeaders(t, a.Up.Last(t))
	other.C = a
	other.Get(t, "/page")
	wantSessionHeaders(t, a.Up.Last(t), map[string]string{"X-Session-Customerid": "c_7"})
	if n := postgresRows(t, pg, "caddy_sessions"); n != 1 {
		t.Errorf("after logout-everywhere the table holds %d rows, want 1", n)
	}

	// DELETE through A removes the other session's row.
	if r := other.API(t, "DELETE", ""); r.Status != http.StatusNoContent {
		t.Fatalf("DELETE: %s", r)
	}
	if n := postgresRows(t, pg, "caddy_sessions"); n != 0 {
		t.Errorf("after DELETE the table holds %d rows, want 0", n)
	}
}

// TestPostgresBlockForm: the block form with placeholders ({env.PG_DSN}
// as a key=value DSN, {env.PG_TABLE} in a schema the DBA created) and
// create_table off against a table created by the README's schema:
// sessions land in that table.
func TestPostgresBlockForm(t *testing.T) {
	t.Parallel()
	pg := testkit.StartPostgres(t)
	schema := strings.ReplaceAll(readmeSchema(t), "caddy_sessions", "shop.sessions")
	schema = strings.ReplaceAll(schema, "shop.sessions_expires_idx", "sessions_expires_idx")
	if out, err := pg.Psql("create schema shop; " + schema); err != nil {
		t.Fatalf("creating the table from the README's schema: %v: %s", err, out)
	}
	session := strings.Join([]string{
		"\tsecret " + secretA,
		"\tclient_writable theme",
		"\tstore postgres {",
		"\t\tdsn {env.PG_DSN}",
		"\t\ttable {env.PG_TABLE}",
		"\t\tpool_size 4",
		"\t\ttimeout 2s",
		"\t\tcreate_table off",
		"\t\tsweep_interval off",
		"\t}",
	}, "\n")
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", pg.Port)
	c := StartCaddy(t, CaddyOpts{Session: session, Env: []string{"PG_DSN=" + dsn, "PG_TABLE=shop.sessions"}})
	br := c.NewBrowser()
	wantObject(t, br.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
	if n := postgresRows(t, pg, "shop.sessions"); n != 1 {
		t.Fatalf("shop.sessions holds %d rows, want 1", n)
	}
	if out, _ := pg.Psql("select count(*) from pg_tables where tablename = 'caddy_sessions'"); out != "0" {
		t.Errorf("create_table off, table shop.sessions: the default table was created anyway (%s)", out)
	}
	br.Get(t, "/page")
	wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Theme": "dark"})
}

// TestPostgresReloadKeepsPool: `caddy reload` with the same store config
// keeps the pool and its connections, and the sessions; a reload to
// another store config (a new pool) closes the old pool's connections,
// and the sessions are still there (they live in the database).
func TestPostgresReloadKeepsPool(t *testing.T) {
	t.Parallel()
	pg := testkit.StartPostgres(t)
	session := postgresSession(pg.URL(), "client_writable theme")
	c := StartCaddy(t, CaddyOpts{Session: session})
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
	carried := func(what string) {
		t.Helper()
		b.Get(t, "/page")
		if got := c.Up.Last(t).Header.Get("X-Session-Theme"); got != "dark" {
			t.Fatalf("%s: the session is not carried: %v", what, c.Up.Last(t).SessionHeaders())
		}
	}
	carried("before reloads")
	first := postgresBackends(t, pg)
	if len(first) == 0 {
		t.Fatal("pg_stat_activity shows no connection from Caddy")
	}

	c.Reload(t, CaddyOpts{Session: session + "\n\tclient_readable *"})
	carried("after a reload with the same store config")
	same := postgresBackends(t, pg)
	for pid := range first {
		if !same[pid] {
			t.Errorf("a reload with the same store config closed backend %s (before %v, after %v)", pid, first, same)
		}
	}

	// Another store config (a longer timeout): a new pool; the old one
	// closes its connections.
	other := strings.Join([]string{
		"\tsecret " + secretA,
		"\tclient_writable theme",
		"\tstore postgres " + pg.URL() + " {",
		"\t\ttimeout 1s",
		"\t}",
	}, "\n")
	c.Reload(t, CaddyOpts{Session: other})
	carried("after a reload with another store config")
	deadline := time.Now().Add(5 * time.Second)
	for {
		now := postgresBackends(t, pg)
		left := 0
		for pid := range first {
			if now[pid] {
				left++
			}
		}
		if left == 0 {
			t.Logf("connections from Caddy: %d at start, %d after the same-config reload, %d after the new-config reload", len(first), len(same), len(now))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s after a reload to another store config, %d of the old pool's %d connections are still open", left, len(first))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDocsPostgresSchema: the schema the README gives DBAs is the one in
// storage/postgres's package doc (comments aside), and it holds every
// column the store creates itself.
func TestDocsPostgresSchema(t *testing.T) {
	t.Parallel()
	readme := readmeSchema(t)
	b, err := os.ReadFile(filepath.Join("..", "storage", "postgres", "postgres.go"))
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	pkgDoc := extractSchema(t, "storage/postgres/postgres.go", src, "a DBA creates it:\n", "\n//\n")
	if readme != pkgDoc {
		t.Fatalf("the README's schema and storage/postgres's package doc differ; keep them equal:\nREADME:      %s\npackage doc: %s", readme, pkgDoc)
	}
	// The columns of the store's own CREATE TABLE, in order.
	i := strings.Index(src, "CREATE TABLE IF NOT EXISTS `+s.table+` (")
	if i < 0 {
		t.Fatal("storage/postgres no longer has its CREATE TABLE IF NOT EXISTS: update this test")
	}
	end := strings.Index(src[i:], ")`")
	for _, line := range strings.Split(src[i:i+end], "\n")[1:] {
		col := strings.Join(strings.Fields(strings.TrimSuffix(strings.TrimSpace(line), ",")), " ")
		if col != "" && !strings.Contains(readme, col) {
			t.Errorf("the store creates column %q, which the README's schema lacks", col)
		}
	}
	if !strings.Contains(readme, "CREATE INDEX caddy_sessions_expires_idx ON caddy_sessions (expires)") {
		t.Errorf("the README's schema lacks the expires index: %s", readme)
	}
}

// readmeSchema returns the SQL of the README's PostgreSQL schema block.
func readmeSchema(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return extractSchema(t, "README.md", string(b), "```sql\n", "```")
}

// extractSchema returns the CREATE TABLE ... CREATE INDEX statements in
// src, between the first open marker that precedes a CREATE TABLE and the
// close marker after it, without SQL comments and with whitespace
// normalised to single spaces.
func extractSchema(t testing.TB, name, src, open, close string) string {
	t.Helper()
	i := strings.Index(src, "CREATE TABLE caddy_sessions")
	if i < 0 {
		t.Fatalf("%s has no CREATE TABLE caddy_sessions", name)
	}
	start := strings.LastIndex(src[:i], open)
	if start < 0 {
		t.Fatalf("%s: no %q before the schema", name, open)
	}
	end := strings.Index(src[i:], close)
	if end < 0 {
		t.Fatalf("%s: no %q after the schema", name, close)
	}
	var lines []string
	for _, line := range strings.Split(src[start+len(open):i+end], "\n") {
		line = strings.TrimPrefix(strings.TrimSpace(line), "//")
		if c := strings.Index(line, "--"); c >= 0 {
			line = line[:c]
		}
		if line = strings.TrimSpace(line); line != "" {
			lines = append(lines, line)
		}
	}
	return strings.Join(strings.Fields(strings.Join(lines, " ")), " ")
}

// TestPostgresValidateWithDatabaseDown: `caddy validate` passes with every
// form of store postgres pointing at a closed port (provisioning never
// connects), and `caddy adapt` refuses a DSN of another scheme at its line
// without showing it.
func TestPostgresValidateWithDatabaseDown(t *testing.T) {
	t.Parallel()
	// No PostgreSQL needed: nothing listens on these ports.
	p := func() int { return freePort(t) }
	for name, store := range map[string]string{
		"url":         fmt.Sprintf("store postgres postgres://caddy:pw@127.0.0.1:%d/shop?sslmode=disable", p()),
		"key=value":   fmt.Sprintf("store postgres \"host=127.0.0.1 port=%d dbname=shop user=caddy\"", p()),
		"placeholder": "store postgres {env.PG_DSN}",
		"block":       fmt.Sprintf("store postgres {\n\t\tdsn postgresql://caddy:{env.PG_PASSWORD}@127.0.0.1:%d/shop\n\t\ttable {env.PG_TABLE}\n\t\ttimeout 300ms\n\t}\n\ton_store_error fail_closed", p()),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			o := CaddyOpts{Session: "\tsecret " + secretA + "\n\t" + store}
			path := filepath.Join(dir, "Caddyfile")
			src := renderCaddyfile(o, p(), p(), filepath.Join(dir, "storage"), "127.0.0.1:9")
			if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			env := []string{fmt.Sprintf("PG_DSN=postgres://127.0.0.1:%d/shop", p()), "PG_PASSWORD=pw", "PG_TABLE=shop.sessions"}
			out, err := runCaddy(t, dir, env, "validate", "--config", path, "--adapter", "caddyfile")
			if err != nil || !strings.Contains(out, "Valid configuration") {
				t.Fatalf("caddy validate with PostgreSQL down: %v\n%s\nCaddyfile:\n%s", err, out, src)
			}
		})
	}
	t.Run("wrong scheme", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		const password = "Pw-shown-nowhere-81"
		o := CaddyOpts{Session: "\tsecret " + secretA + "\n\tstore postgres mysql://caddy:" + password + "@db/shop"}
		path := filepath.Join(dir, "Caddyfile")
		src := renderCaddyfile(o, p(), p(), filepath.Join(dir, "storage"), "127.0.0.1:9")
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		line := 0
		for i, l := range strings.Split(src, "\n") {
			if strings.Contains(l, "mysql://") {
				line = i + 1
			}
		}
		out, err := runCaddy(t, dir, nil, "adapt", "--config", path, "--adapter", "caddyfile")
		if err == nil {
			t.Fatalf("caddy adapt accepted a mysql:// DSN:\n%s", out)
		}
		if !strings.Contains(out, `\"mysql\" is not PostgreSQL's`) || !strings.Contains(out, fmt.Sprintf("Caddyfile:%d", line)) {
			t.Errorf("want the scheme named at Caddyfile:%d, got:\n%s", line, out)
		}
		if strings.Contains(out, password) {
			t.Errorf("caddy adapt showed the DSN's password:\n%s", out)
		}
	})
}

// TestPostgresOutage: with PostgreSQL killed, requests through a fail_open
// and a fail_closed instance come back promptly: pages served without a
// session (fail_open) or 503 without reaching the upstream (fail_closed),
// API reads and writes 503 with nothing written, the cookie left alone.
// When PostgreSQL is back, the sessions are there again, with their data.
func TestPostgresOutage(t *testing.T) {
	t.Parallel()
	pg := testkit.StartPostgres(t, "-c", "synchronous_commit=on")
	cs := StartCaddies(t,
		CaddyOpts{Session: postgresSession(pg.URL(), "client_writable theme", "on_store_error fail_open")},
		CaddyOpts{Session: postgresSession(pg.URL(), "client_writable theme", "on_store_error fail_closed")},
	)
	open, closed := cs[0], cs[1]
	b := open.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)
	cookie := b.Jar.Header()
	for _, c := range cs {
		c.Do(t, Req{Path: "/page", Cookie: cookie})
		wantSessionHeaders(t, c.Up.Last(t), map[string]string{"X-Session-Theme": "dark"})
	}

	pg.Kill()
	var took redisDurations
	check := func(what string, c *Caddy, q Req, status int) *Resp {
		t.Helper()
		res := redisDo(c, q)
		if res.Err != nil {
			t.Fatalf("%s with PostgreSQL down: %v", what, res.Err)
		}
		took = append(took, res.Took)
		t.Logf("outage: %-40s %d in %s", what, res.Resp.Status, res.Took.Round(time.Millisecond))
		if res.Took > postgresFaultBound {
			t.Errorf("%s took %s with PostgreSQL down, want under %s", what, res.Took, postgresFaultBound)
		}
		if res.Resp.Status != status {
			t.Errorf("%s with PostgreSQL down: status %d, want %d:\n%s", what, res.Resp.Status, status, res.Resp)
		}
		if q.Method != http.MethodDelete {
			redisNoClearedCookie(t, what, res.Resp)
		}
		return res.Resp
	}
	for name, c := range map[string]*Caddy{"fail_open": open, "fail_closed": closed} {
		wantError(t, check(name+": API GET", c, Req{Path: "/__session", Cookie: cookie}, 503), 503)
		wantError(t, check(name+": API POST", c, Req{Method: "POST", Path: "/__session", Body: `{"theme":"lost"}`, CT: "application/json", Cookie: cookie}, 503), 503)
		r := check(name+": API POST without a cookie", c, Req{Method: "POST", Path: "/__session", Body: `{"theme":"x"}`, CT: "application/json"}, 503)
		noSetCookie(t, r)
		redisWantUpstream200(t, check(name+": page without a cookie", c, Req{Path: "/anon"}, 200), "/anon")
	}
	redisWantUpstream200(t, check("fail_open: page", open, Req{Path: "/open-page", Cookie: cookie}, 200), "/open-page")
	noSessionHeaders(t, open.Up.Last(t))
	check("fail_open: upstream write", open, Req{Path: "/open-write", Cookie: cookie, Header: []string{`X-Test-Resp: X-Session-Set: {"theme":"lost"}`}}, 200)
	check("fail_closed: page", closed, Req{Path: "/closed-page", Cookie: cookie}, 503)
	for _, rec := range closed.Up.Requests() {
		if rec.Path == "/closed-page" {
			t.Errorf("fail_closed forwarded a request to the upstream with PostgreSQL down")
		}
	}
	t.Logf("requests with PostgreSQL down: %s", took)

	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	for name, c := range map[string]*Caddy{"fail_open": open, "fail_closed": closed} {
		for {
			res := redisDo(c, Req{Path: "/__session", Cookie: cookie})
			if res.Err == nil && res.Resp.Status == http.StatusOK {
				// Nothing written during the outage: the data is as before.
				wantObject(t, res.Resp, http.StatusOK, `{"theme":"dark"}`)
				t.Logf("%s: the session is read again %s after PostgreSQL answered", name, time.Since(up).Round(time.Millisecond))
				break
			}
			if time.Since(up) > 5*time.Second {
				t.Fatalf("%s: the session is not read 5 s after PostgreSQL came back: %v %v", name, res.Err, res.Resp)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	wantObject(t, b.API(t, "POST", `{"theme":"back"}`), http.StatusOK, `{"theme":"back"}`)
	closed.Do(t, Req{Path: "/page", Cookie: b.Jar.Header()})
	wantSessionHeaders(t, closed.Up.Last(t), map[string]string{"X-Session-Theme": "back"})
}

// durabilityKeys is how many keys a durability worker writes into one
// session before it starts another (max_keys is 64: these plus n).
const durabilityKeys = 60

// durabilityWrite is one API write of the durability load: session s of
// worker w, write j, which sets k<j> to "w-s-j" and n to j in one merge.
type durabilityWrite struct {
	j      int
	status int // 0: no answer
	took   time.Duration
	start  time.Time
}

// durabilitySession is one session of a durability worker.
type durabilitySession struct {
	w, s   int
	cookie string // "" until a write created it
	writes []durabilityWrite
}

func durabilityValue(w, s, j int) string { return fmt.Sprintf("%d-%d-%d", w, s, j) }

// TestPostgresDurabilityKill (S50): several clients write through Caddy
// while PostgreSQL (synchronous_commit on) is killed with SIGKILL, the
// whole server at once, and restarted on the same port and data. Every
// write Caddy answered with 200 is then present with its exact value, no
// session is torn (each write sets a key k<j> and the counter n to j in
// one merge: n is the highest j present, and every key present holds the
// value written), and no session holds a write that was never sent.
// Requests during the outage get 503 promptly.
func TestPostgresDurabilityKill(t *testing.T) {
	t.Parallel()
	pg := testkit.StartPostgres(t, "-c", "synchronous_commit=on")
	keys := []string{"n"}
	for j := range durabilityKeys {
		keys = append(keys, fmt.Sprintf("k%d", j))
	}
	c := StartCaddy(t, CaddyOpts{Session: postgresSession(pg.URL(), "client_writable "+strings.Join(keys, " "))})
	// Create the table before the load, so that the kill hits writes.
	wantObject(t, c.NewBrowser().API(t, "GET", ""), http.StatusOK, `{}`)

	const workers = 6
	stop := make(chan struct{})
	results := make([][]*durabilitySession, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sess := &durabilitySession{w: w}
			results[w] = append(results[w], sess)
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				if j == durabilityKeys {
					sess = &durabilitySession{w: w, s: len(results[w])}
					results[w] = append(results[w], sess)
					j = 0
				}
				if sess.cookie == "" && len(sess.writes) > 0 {
					// The write that was to create this session failed:
					// start over with it, as a browser would.
					sess.writes, j = nil, 0
				}
				body := fmt.Sprintf(`{"k%d":%q,"n":%d}`, j, durabilityValue(w, sess.s, j), j)
				q := Req{Method: "POST", Path: "/__session", Body: body, CT: "application/json", Cookie: sess.cookie}
				res := redisDo(c, q)
				wr := durabilityWrite{j: j, took: res.Took, start: res.Start}
				if res.Err == nil {
					wr.status = res.Resp.Status
					for _, v := range redisIssuedValues(t, res.Resp) {
						sess.cookie = "__session=" + v
					}
				}
				sess.writes = append(sess.writes, wr)
				if wr.status != http.StatusOK {
					time.Sleep(20 * time.Millisecond) // do not spin through the outage
				}
			}
		}()
	}

	time.Sleep(1500 * time.Millisecond)
	killAt := time.Now()
	pg.Kill()
	killed := time.Now() // every process of the server has its SIGKILL
	t.Logf("PostgreSQL killed (SIGKILL to every process of the server)")
	time.Sleep(time.Second)
	restartAt := time.Now()
	if err := pg.Start(); err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	restarted := time.Now()
	t.Logf("PostgreSQL restarted after %s down (recovery took %s)", restarted.Sub(killAt).Round(time.Millisecond), restarted.Sub(restartAt).Round(time.Millisecond))
	if !strings.Contains(pg.Logs(), "not properly shut down") {
		t.Errorf("PostgreSQL did not recover from a crash: the kill was not a crash")
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()

	// Every write: answered, promptly; 200 or 503, nothing else.
	var acked, failed, outage, unanswered int
	var outageTook redisDurations
	for _, sessions := range results {
		for _, sess := range sessions {
			for _, wr := range sess.writes {
				switch wr.status {
				case http.StatusOK:
					acked++
				case http.StatusServiceUnavailable:
					failed++
				case 0:
					unanswered++
				default:
					t.Errorf("worker %d session %d write %d: status %d, want 200 or 503", sess.w, sess.s, wr.j, wr.status)
				}
				if wr.took > postgresFaultBound {
					t.Errorf("worker %d session %d write %d took %s, want under %s", sess.w, sess.s, wr.j, wr.took, postgresFaultBound)
				}
				if wr.start.After(killed) && wr.start.Add(wr.took).Before(restartAt) {
					outage++
					outageTook = append(outageTook, wr.took)
					if wr.status != http.StatusServiceUnavailable {
						t.Errorf("worker %d write %d ran while PostgreSQL was down and got %d, want 503", sess.w, wr.j, wr.status)
					}
				}
			}
		}
	}
	if unanswered > 0 {
		t.Errorf("%d writes got no answer", unanswered)
	}
	if outage == 0 {
		t.Error("no write ran while PostgreSQL was down")
	}
	t.Logf("writes during the outage: %s", outageTook)

	// What survived, read back through Caddy.
	var sessions, found, lostAcked, unackedPresent int
	for _, list := range results {
		for _, sess := range list {
			if sess.cookie == "" {
				continue
			}
			sessions++
			r := c.Do(t, Req{Path: "/__session", Cookie: sess.cookie})
			if r.Status != http.StatusOK {
				t.Fatalf("reading back worker %d session %d: %s", sess.w, sess.s, r)
			}
			var got map[string]any
			if err := json.Unmarshal(r.Body, &got); err != nil {
				t.Fatalf("reading back: %v: %s", err, r.Body)
			}
			sent := map[int]int{} // j → status of its last attempt
			for _, wr := range sess.writes {
				sent[wr.j] = wr.status
			}
			maxJ := -1
			for k, v := range got {
				if k == "n" {
					continue
				}
				j, err := strconv.Atoi(strings.TrimPrefix(k, "k"))
				status, ok := sent[j]
				switch {
				case err != nil || !ok:
					t.Errorf("worker %d session %d holds %s=%v, which was never written", sess.w, sess.s, k, v)
					continue
				case v != durabilityValue(sess.w, sess.s, j):
					t.Errorf("worker %d session %d: %s=%v, want %q", sess.w, sess.s, k, v, durabilityValue(sess.w, sess.s, j))
				}
				if status != http.StatusOK {
					unackedPresent++
				}
				maxJ = max(maxJ, j)
			}
			if n, ok := got["n"].(float64); !ok || int(n) != maxJ {
				t.Errorf("worker %d session %d is torn: n=%v but the highest key written is k%d", sess.w, sess.s, got["n"], maxJ)
			}
			for j, status := range sent {
				if status != http.StatusOK {
					continue
				}
				if _, ok := got[fmt.Sprintf("k%d", j)]; ok {
					found++
				} else {
					lostAcked++
					t.Errorf("worker %d session %d: write %d was acknowledged with 200 and is gone", sess.w, sess.s, j)
				}
			}
		}
	}
	t.Logf("writes: %d acknowledged (200), %d refused (503), %d during the outage; after the restart: %d of %d acknowledged writes found in %d sessions, %d lost; %d unacknowledged writes present (committed, answer lost)",
		acked, failed, outage, found, acked, sessions, lostAcked, unackedPresent)
	if found == 0 {
		t.Fatal("no acknowledged write was found: the load did not run")
	}
}

// TestPostgresExampleTwoInstances keeps examples/postgres-two-instances
// working: its Caddyfile adapts as is (and is formatted), and, on spare
// ports and a private PostgreSQL, its two gateways share a session as its
// README says, which survives a restart of the database.
func TestPostgresExampleTwoInstances(t *testing.T) {
	t.Parallel()
	pg := testkit.StartPostgres(t, "-c", "synchronous_commit=on")
	shop := twoGatewayExample{
		dir: "postgres-two-instances", gateA: 8091, gateB: 8092, shop: 9091,
		env:       []string{"SESSION_SECRET=" + secretB, "PG_DSN=" + pg.URL()},
		forbidden: "5432",
	}.run(t)
	a, b, body := shop.a, shop.b, func(r *Resp, want ...string) { t.Helper(); shop.page(t, r, want...) }

	jar := NewJar()
	viaA, viaB := &Browser{C: a, Jar: jar}, &Browser{C: b, Jar: jar}
	wantObject(t, viaA.API(t, "POST", `{"countryCode":"DE","cart":"c-1"}`), http.StatusOK, `{"countryCode":"DE","cart":"c-1"}`)
	body(viaB.Get(t, "/"), "served through gateway-b", "countryCode: DE", "cart: c-1", "customerId: \n")
	wantObject(t, viaB.API(t, "GET", ""), http.StatusOK, `{"countryCode":"DE","cart":"c-1"}`)
	body(viaB.Get(t, "/login"), "logged in as c_42 through gateway-b")
	body(viaA.Get(t, "/"), "served through gateway-a", "countryCode: DE", "customerId: c_42")
	if n := postgresRows(t, pg, "caddy_sessions"); n != 1 {
		t.Fatalf("caddy_sessions holds %d rows after a login (rotation), want 1", n)
	}

	// The database restarts (a crash): the session is still there.
	pg.Kill()
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := viaB.Get(t, "/")
		if strings.Contains(string(r.Body), "customerId: c_42") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s after PostgreSQL came back the session is not carried:\n%s", r)
		}
		time.Sleep(50 * time.Millisecond)
	}

	old := jar.Header()
	if r := viaB.API(t, "DELETE", ""); r.Status != http.StatusNoContent {
		t.Fatalf("DELETE through gateway-b:\n%s", r)
	}
	wantObject(t, a.Do(t, Req{Path: "/__session", Cookie: old}), http.StatusOK, `{}`)
	body(a.Do(t, Req{Path: "/", Cookie: old}), "served through gateway-a", "countryCode: \n", "customerId: \n")
}

// TestPostgresStall: PostgreSQL alive but frozen (SIGSTOP to every process
// of the server, as in a VM pause): requests come back within the store's
// timeout plus a margin, with 503 (API) or without a session (fail_open);
// once it runs again, the session is read again.
func TestPostgresStall(t *testing.T) {
	t.Parallel()
	pg := testkit.StartPostgres(t)
	c := StartCaddy(t, CaddyOpts{Session: postgresSession(pg.URL(), "client_writable theme")})
	b := c.NewBrowser()
	wantObject(t, b.API(t, "POST", `{"theme":"dark"}`), http.StatusOK, `{"theme":"dark"}`)

	if err := pg.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = pg.Signal(syscall.SIGCONT)
		}
	}
	defer resume()
	var took redisDurations
	for i, q := range []Req{
		{Path: "/__session", Cookie: b.Jar.Header()},
		{Method: "POST", Path: "/__session", Body: `{"theme":"x"}`, CT: "application/json", Cookie: b.Jar.Header()},
		{Path: "/page", Cookie: b.Jar.Header()},
	} {
		res := redisDo(c, q)
		if res.Err != nil {
			t.Fatalf("request %d with PostgreSQL frozen: %v", i, res.Err)
		}
		took = append(took, res.Took)
		if res.Took > postgresFaultBound {
			t.Errorf("%s %s took %s with PostgreSQL frozen, want under %s (timeout 500ms)", q.Method, q.Path, res.Took, postgresFaultBound)
		}
		if q.Path == "/page" {
			redisWantUpstream200(t, res.Resp, "/page")
			noSessionHeaders(t, c.Up.Last(t))
		} else {
			wantError(t, res.Resp, http.StatusServiceUnavailable)
		}
		redisNoClearedCookie(t, "a request with PostgreSQL frozen", res.Resp)
	}
	t.Logf("requests with PostgreSQL frozen: %s", took)

	resume()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := c.Do(t, Req{Path: "/__session", Cookie: b.Jar.Header()})
		if r.Status == http.StatusOK {
			wantObject(t, r, http.StatusOK, `{"theme":"dark"}`)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s after PostgreSQL resumed the session is not read:\n%s", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
