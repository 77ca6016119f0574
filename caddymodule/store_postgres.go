package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/caddy-session/caddy-session/storage"
	"github.com/caddy-session/caddy-session/storage/postgres"
)

func init() {
	caddy.RegisterModule(PostgresStore{})
}

// postgresPools holds one PostgreSQL connection pool per distinct
// configuration, shared by the configs that use it and kept across
// reloads; the last user closes it.
var postgresPools = caddy.NewUsagePool()

// PostgresStore keeps sessions in a PostgreSQL table, so several Caddy
// instances share them, durably: a write the API or the upstream saw
// acknowledged is committed (with PostgreSQL's default synchronous_commit
// on, it survives a crash of the database). The DSN and the table name
// accept placeholders such as {env.PG_DSN}. Provisioning never connects:
// `caddy validate` passes with the database down, and requests follow
// on_store_error until it answers.
type PostgresStore struct {
	// The connection string: a URL,
	// postgres://user:password@host:5432/db?sslmode=verify-full
	// (postgresql:// too), or key=value pairs, host=... dbname=...
	// user=..., as libpq and pgx take them. Required.
	DSN string `json:"dsn,omitempty"`

	// The table, optionally schema-qualified (sessions.caddy). Default:
	// caddy_sessions.
	Table string `json:"table,omitempty"`

	// Connections in the pool. Default: 10.
	PoolSize int `json:"pool_size,omitempty"`

	// Bounds each store operation, waiting for a connection and
	// connecting included: a database that does not answer costs a
	// request at most about this long. Default: 500ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// Creates the table and its index on first use when they are missing.
	// Default: true; false when a DBA creates them (schema in the README).
	CreateTable *bool `json:"create_table,omitempty"`

	// How often expired rows are deleted, by one instance at a time.
	// Default: 1m; negative (Caddyfile: sweep_interval off) turns the
	// sweeper off. Expired rows are never served either way.
	SweepInterval caddy.Duration `json:"sweep_interval,omitempty"`

	// The open store, set by Provision: its methods (storage.Store and
	// the optional interfaces) are the module's.
	*postgres.Store `json:"-"`

	poolKey  string
	identity string
}

// CaddyModule returns the Caddy module information.
func (PostgresStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.session.stores.postgres",
		New: func() caddy.Module { return new(PostgresStore) },
	}
}

// Provision resolves placeholders and finds or creates the pool for this
// configuration. It does not connect.
func (s *PostgresStore) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	cfg := postgres.Config{
		DSN:           repl.ReplaceAll(s.DSN, ""),
		Table:         repl.ReplaceAll(s.Table, ""),
		MaxConns:      s.PoolSize,
		Timeout:       time.Duration(s.Timeout),
		CreateTable:   s.CreateTable == nil || *s.CreateTable,
		SweepInterval: time.Duration(s.SweepInterval),
	}
	if cfg.DSN == "" {
		return errors.New("store postgres needs a dsn: postgres://user:password@host:5432/db, or host=... dbname=... (an empty {env.*} placeholder?)")
	}
	if err := postgresDSNProblem(cfg.DSN); err != "" {
		return errors.New("store postgres: dsn: " + err)
	}
	if cfg.Table == "" && s.Table != "" {
		return errors.New("store postgres: the table name is empty after resolving its placeholders")
	}

	// The pool key is a hash of the resolved configuration: the same
	// config shares one pool across reloads; the password never sits in
	// memory as a map key.
	id, _ := json.Marshal([]any{cfg.DSN, cfg.Table, cfg.MaxConns, cfg.Timeout, cfg.CreateTable, cfg.SweepInterval})
	sum := sha256.Sum256(id)
	s.poolKey = hex.EncodeToString(sum[:])
	// The sessions are the same wherever the DSN and table are, whatever
	// the timeouts and pool size.
	table := cfg.Table
	if table == "" {
		table = postgres.DefaultTable
	}
	where, _ := json.Marshal([]string{cfg.DSN, table})
	sum = sha256.Sum256(where)
	s.identity = "postgres\x00" + hex.EncodeToString(sum[:])

	v, _, err := postgresPools.LoadOrNew(s.poolKey, func() (caddy.Destructor, error) {
		st, err := postgres.New(cfg)
		if err != nil {
			return nil, postgresConfigError(err)
		}
		return postgresPool{st}, nil
	})
	if err != nil {
		s.poolKey = ""
		return err
	}
	s.Store = v.(postgresPool).Store
	return nil
}

// postgresConfigError rewrites an error of postgres.New so that it never
// holds the DSN: pgx quotes the connection string it could not parse,
// hiding what it recognises as a password, which is best effort only.
func postgresConfigError(err error) error {
	var pce *pgconn.ParseConfigError
	if errors.As(err, &pce) {
		return errors.New("store postgres: the dsn does not parse (not shown: it may hold a password); write postgres://user:password@host:5432/db?sslmode=..., or key=value pairs such as host=db.internal dbname=shop user=caddy")
	}
	return err
}

// postgresDSNProblem says what is wrong with a DSN whose form can be told
// without parsing it all, or "" when nothing is. The message never quotes
// the DSN, which may hold a password.
func postgresDSNProblem(dsn string) string {
	scheme, _, isURL := strings.Cut(dsn, "://")
	if !isURL {
		if !strings.Contains(dsn, "=") {
			return "not a connection string: write postgres://user:password@host:5432/db, or key=value pairs such as host=db.internal dbname=shop user=caddy"
		}
		return ""
	}
	if scheme != "postgres" && scheme != "postgresql" {
		return fmt.Sprintf("scheme %q is not PostgreSQL's; write postgres://user:password@host:5432/db?sslmode=... (or postgresql://)", scheme)
	}
	if _, err := url.Parse(dsn); err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		if strings.Contains(err.Error(), "@") || strings.Contains(err.Error(), "://") {
			return "the URL does not parse (not shown: it may hold a password)"
		}
		return "the URL does not parse: " + err.Error()
	}
	return ""
}

// Cleanup releases this config's hold on the pool; the last one closes
// it.
func (s *PostgresStore) Cleanup() error {
	if s.poolKey == "" {
		return nil
	}
	_, err := postgresPools.Delete(s.poolKey)
	return err
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	store postgres <dsn>
//
//	store postgres [<dsn>] {
//		dsn            <dsn>
//		table          <name>
//		pool_size      <n>
//		timeout        <duration>
//		create_table   on|off
//		sweep_interval <duration>|off
//	}
func (s *PostgresStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // store name
	if d.NextArg() {
		s.DSN = d.Val()
		if err := checkPostgresDSN(d, s.DSN); err != nil {
			return err
		}
	}
	if d.NextArg() {
		return d.Errf("store postgres takes one argument, the dsn: quote a key=value dsn (\"host=db dbname=shop\") or use the dsn subdirective")
	}
	err := parseBlock(d, "subdirective %q of store postgres", subdirectives{
		"dsn": func(d *caddyfile.Dispenser) (err error) {
			if s.DSN != "" {
				return d.Err("postgres dsn given twice")
			}
			if s.DSN, err = oneArg(d); err != nil {
				return err
			}
			return checkPostgresDSN(d, s.DSN)
		},
		"table": func(d *caddyfile.Dispenser) (err error) {
			if s.Table, err = oneArg(d); err != nil {
				return err
			}
			if literal(s.Table) && strings.Contains("."+s.Table+".", "..") {
				return d.Errf("table %q: want a name, or schema.name", s.Table)
			}
			return nil
		},
		"pool_size": setInt(&s.PoolSize, 1, 0),
		"timeout":   setDuration(&s.Timeout),
		"create_table": func(d *caddyfile.Dispenser) error {
			on, err := parseSwitch(d)
			if err == nil {
				s.CreateTable = &on
			}
			return err
		},
		"sweep_interval": func(d *caddyfile.Dispenser) error {
			name := d.Val()
			v, err := oneArg(d)
			switch {
			case err != nil:
				return err
			case v == "off":
				s.SweepInterval = -1
				return nil
			}
			s.SweepInterval, err = parseDuration(d, name, v)
			return err
		},
	})
	if err != nil {
		return err
	}
	if s.DSN == "" {
		return d.Err("store postgres needs a dsn: store postgres postgres://user:password@host:5432/db, or dsn {env.PG_DSN} in its block")
	}
	return nil
}

// checkPostgresDSN refuses a literal DSN of the wrong form: a URL whose
// scheme is not postgres:// or postgresql://, or a string that is neither
// a URL nor key=value pairs. One with a placeholder is checked at
// provisioning. The DSN itself is never shown: it may hold a password.
func checkPostgresDSN(d *caddyfile.Dispenser, dsn string) error {
	scheme, _, isURL := strings.Cut(dsn, "://")
	switch {
	case isURL && !literal(scheme):
		return nil // {env.PG_SCHEME}://...
	case !literal(dsn) && (!isURL || scheme == "postgres" || scheme == "postgresql"):
		return nil // {env.PG_DSN}, host={env.PG_HOST}...
	}
	if problem := postgresDSNProblem(dsn); problem != "" {
		return d.Errf("postgres dsn: %s", problem)
	}
	return nil
}

// postgresPool lets the usage pool close a store's pool when no config
// uses it.
type postgresPool struct{ *postgres.Store }

// Destruct stops the sweeper and closes the connections.
func (p postgresPool) Destruct() error { return p.Close() }

// Interface guards
var (
	_ caddy.Provisioner     = (*PostgresStore)(nil)
	_ caddy.CleanerUpper    = (*PostgresStore)(nil)
	_ caddyfile.Unmarshaler = (*PostgresStore)(nil)
	_ storage.Store         = (*PostgresStore)(nil)
	_ storage.Confirmer     = (*PostgresStore)(nil)
	_ storage.Counter       = (*PostgresStore)(nil)
	_ storage.Indexer       = (*PostgresStore)(nil)
)
