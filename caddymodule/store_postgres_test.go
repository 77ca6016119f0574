package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-session/caddy-session/storage"
)

// adaptPostgresStore adapts a session whose store line is line (with its
// block, if any) and returns the store's JSON.
func adaptPostgresStore(t *testing.T, line string) (string, error) {
	t.Helper()
	out, err := adapt(t, ":8080 {\n\tsession {\n\t\t"+line+"\n\t}\n}\n")
	if err != nil {
		return "", err
	}
	store, _ := json.Marshal(sessionHandler(t, out)["store"])
	return string(store), nil
}

func TestCaddyfileAdaptPostgres(t *testing.T) {
	for _, tc := range []struct {
		name, line, want string
	}{
		{"url", "store postgres postgres://caddy:pw@db:5432/shop?sslmode=disable",
			`{"backend":"postgres","dsn":"postgres://caddy:pw@db:5432/shop?sslmode=disable"}`},
		{"postgresql scheme", "store postgres postgresql://db/shop",
			`{"backend":"postgres","dsn":"postgresql://db/shop"}`},
		{"quoted key=value", `store postgres "host=db dbname=shop user=caddy"`,
			`{"backend":"postgres","dsn":"host=db dbname=shop user=caddy"}`},
		{"placeholder", "store postgres {env.PG_DSN}",
			`{"backend":"postgres","dsn":"{env.PG_DSN}"}`},
		{"placeholder password", "store postgres postgres://caddy:{env.PG_PW}@db/shop",
			`{"backend":"postgres","dsn":"postgres://caddy:{env.PG_PW}@db/shop"}`},
		{"block", "store postgres {\n\t\t\tdsn {env.PG_DSN}\n\t\t\ttable sessions.caddy\n\t\t\tpool_size 20\n\t\t\ttimeout 250ms\n\t\t\tcreate_table off\n\t\t\tsweep_interval 5m\n\t\t}",
			`{"backend":"postgres","create_table":false,"dsn":"{env.PG_DSN}","pool_size":20,"sweep_interval":300000000000,"table":"sessions.caddy","timeout":250000000}`},
		{"argument and block", "store postgres postgres://db/shop {\n\t\t\ttable {env.PG_TABLE}\n\t\t\tcreate_table\n\t\t\tsweep_interval off\n\t\t}",
			`{"backend":"postgres","create_table":true,"dsn":"postgres://db/shop","sweep_interval":-1,"table":"{env.PG_TABLE}"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := adaptPostgresStore(t, tc.line)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("store JSON:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestCaddyfilePostgresErrors: what the Caddyfile itself gets wrong fails
// at its line, and never shows the DSN's password.
func TestCaddyfilePostgresErrors(t *testing.T) {
	const pw = "Hunter2-pw-XyZ"
	for _, tc := range []struct {
		name, line string
		lineNo     int
		want       []string
	}{
		{"mysql scheme", "store postgres mysql://caddy:" + pw + "@db/shop", 2, []string{`scheme "mysql" is not PostgreSQL's`, "postgres://"}},
		{"http scheme in block", "store postgres {\n\t\tdsn http://caddy:" + pw + "@db/shop\n\t}", 3, []string{`scheme "http"`}},
		{"wrong scheme, placeholder elsewhere", "store postgres redis://caddy:{env.PW}@db/shop", 2, []string{`scheme "redis"`}},
		{"no dsn", "store postgres", 2, []string{"store postgres needs a dsn"}},
		{"empty block", "store postgres {\n\t}", 2, []string{"store postgres needs a dsn"}},
		{"host only", "store postgres db.internal:5432", 2, []string{"not a connection string", "host=db.internal"}},
		{"bad port", "store postgres postgres://caddy:" + pw + "@db:port/shop", 2, []string{"does not parse"}},
		{"unquoted key=value", "store postgres host=db dbname=shop", 2, []string{"one argument", "quote"}},
		{"dsn twice", "store postgres postgres://db/shop {\n\t\tdsn postgres://db/other\n\t}", 3, []string{"dsn given twice"}},
		{"bad table", "store postgres postgres://db/shop {\n\t\ttable sessions..caddy\n\t}", 3, []string{`table "sessions..caddy"`}},
		{"pool_size zero", "store postgres postgres://db/shop {\n\t\tpool_size 0\n\t}", 3, []string{`pool_size "0"`}},
		{"bad timeout", "store postgres postgres://db/shop {\n\t\ttimeout soon\n\t}", 3, []string{`timeout "soon"`}},
		{"bad create_table", "store postgres postgres://db/shop {\n\t\tcreate_table maybe\n\t}", 3, []string{`create_table "maybe"`}},
		{"bad sweep_interval", "store postgres postgres://db/shop {\n\t\tsweep_interval never\n\t}", 3, []string{`sweep_interval "never"`}},
		{"typo", "store postgres postgres://db/shop {\n\t\ttabel x\n\t}", 3, []string{`unknown subdirective "tabel" of store postgres`, "did you mean table?"}},
		{"duplicate", "store postgres postgres://db/shop {\n\t\ttimeout 1s\n\t\ttimeout 2s\n\t}", 4, []string{`duplicate subdirective "timeout"`}},
		{"unknown store near", "store postgre postgres://db/shop", 2, []string{`unknown store "postgre"`, "did you mean postgres?"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := unmarshalSession("session {\n\t" + tc.line + "\n}")
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			t.Log(msg)
			if want := "Testfile:" + strconv.Itoa(tc.lineNo); !strings.Contains(msg, want) {
				t.Errorf("error %q does not name line %d", msg, tc.lineNo)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, pw) || strings.Contains(msg, "@db") {
				t.Errorf("error %q shows the DSN", msg)
			}
		})
	}
}

// closedPort returns a loopback port nothing listens on (it was free a
// moment ago).
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// provisionPostgres provisions s in a fresh Caddy context.
func provisionPostgres(t *testing.T, s *PostgresStore) error {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return s.Provision(ctx)
}

// TestPostgresStoreProvision: provisioning never connects (a closed port
// provisions fine, and an operation then fails fast with
// storage.ErrUnavailable), resolves placeholders, shares one pool per
// resolved config (released by the last Cleanup), and names the place by
// DSN and table only.
func TestPostgresStoreProvision(t *testing.T) {
	port := closedPort(t)
	t.Setenv("PGGLUE_TEST_DSN", fmt.Sprintf("postgres://caddy:pw@127.0.0.1:%d/shop?sslmode=disable", port))
	a := &PostgresStore{DSN: "{env.PGGLUE_TEST_DSN}", Timeout: caddy.Duration(300 * time.Millisecond)}
	if err := provisionPostgres(t, a); err != nil {
		t.Fatalf("provisioning with the database down: %v", err)
	}
	b := &PostgresStore{DSN: "{env.PGGLUE_TEST_DSN}", Timeout: caddy.Duration(300 * time.Millisecond)}
	if err := provisionPostgres(t, b); err != nil {
		t.Fatal(err)
	}
	if a.Store != b.Store {
		t.Error("two stores of the same config must share one pool")
	}
	if n, _ := postgresPools.References(a.poolKey); n != 2 {
		t.Errorf("pool references: %d, want 2", n)
	}
	c := &PostgresStore{DSN: "{env.PGGLUE_TEST_DSN}", Timeout: caddy.Duration(time.Second)}
	if err := provisionPostgres(t, c); err != nil {
		t.Fatal(err)
	}
	if c.Store == a.Store {
		t.Error("another timeout must get another pool")
	}
	if c.StoreIdentity() != a.StoreIdentity() {
		t.Error("the same DSN and table are the same store, whatever the timeout")
	}
	d := &PostgresStore{DSN: "{env.PGGLUE_TEST_DSN}", Table: "other"}
	if err := provisionPostgres(t, d); err != nil {
		t.Fatal(err)
	}
	if d.StoreIdentity() == a.StoreIdentity() {
		t.Error("another table is another store")
	}
	for _, s := range []*PostgresStore{c, d} {
		if err := s.Cleanup(); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	_, err := a.Load(context.Background(), "k")
	took := time.Since(start)
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Load with the database down: %v, want storage.ErrUnavailable", err)
	}
	if took > 5*time.Second {
		t.Errorf("Load with the database down took %s", took)
	}
	if strings.Contains(fmt.Sprint(err), ":pw@") {
		t.Errorf("the error shows the password: %v", err)
	}

	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if n, ok := postgresPools.References(a.poolKey); !ok || n != 1 {
		t.Errorf("after one Cleanup: %d references (%v), want 1", n, ok)
	}
	if err := b.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, ok := postgresPools.References(a.poolKey); ok {
		t.Error("the last Cleanup must close and drop the pool")
	}
}

// TestPostgresStoreProvisionErrors: what placeholders resolve to is
// checked at provisioning, without showing the DSN.
func TestPostgresStoreProvisionErrors(t *testing.T) {
	const pw = "Secret-pw-9QzT"
	for _, tc := range []struct {
		name, dsn, table, want string
	}{
		{"empty", "", "", "needs a dsn"},
		{"wrong scheme", "mysql://caddy:" + pw + "@db/shop", "", `scheme "mysql"`},
		{"not a dsn", "db.internal", "", "not a connection string"},
		{"bad key=value", "host=db port=notaport password=" + pw, "", "does not parse"},
		{"bad url", "postgres://caddy:" + pw + "@db:notaport/shop", "", "does not parse"},
		{"empty table", "postgres://db/shop", "{env.PGGLUE_TEST_EMPTY}", "table name is empty"},
		{"bad table", "postgres://db/shop", "a..b", "bad table name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PGGLUE_TEST_DSN", tc.dsn)
			s := &PostgresStore{DSN: "{env.PGGLUE_TEST_DSN}", Table: tc.table}
			err := provisionPostgres(t, s)
			if err == nil {
				_ = s.Cleanup()
				t.Fatal("provisioned")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("error %q shows the password", err)
			}
			if s.poolKey != "" {
				t.Error("a failed provision must hold no pool")
			}
		})
	}
}
