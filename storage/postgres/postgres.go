// Package postgres is a session store in a PostgreSQL table, shared by every
// Caddy instance that points at the same database. It implements
// storage.Store and the optional storage.Confirmer, storage.Counter and
// storage.Indexer. It is plain Go (pgx's pool), with no Caddy import.
//
// # Schema
//
// One table (Config.Table, default caddy_sessions), created on first use
// when Config.CreateTable is set; otherwise a DBA creates it:
//
//	CREATE TABLE caddy_sessions (
//	    key       text PRIMARY KEY,         -- opaque key (a hash of the session ID)
//	    vals      text NOT NULL,            -- the session's values: one compact JSON object
//	    created   timestamptz NOT NULL,
//	    deadline  timestamptz NOT NULL,     -- absolute end (Created + max_age)
//	    expires   timestamptz NOT NULL,     -- idle expiry, never after deadline
//	    audience  text NOT NULL DEFAULT '', -- the site the session belongs to
//	    new_until timestamptz,              -- not null while the session is New: the latest expiry it may have
//	    rotated   boolean NOT NULL DEFAULT false, -- a key Rotate moved the session away from (until expires)
//	    version   bigint NOT NULL DEFAULT 0 -- changes with the values: the API's ETag
//	);
//	CREATE INDEX caddy_sessions_expires_idx ON caddy_sessions (expires);
//
// The values are kept as the exact JSON text the store wrote (not jsonb,
// which rejects the string escape \u0000 and re-spells numbers); cast with
// vals::jsonb to query them. Times are kept to the microsecond. A row whose
// expires (or deadline) has passed is never served; a sweeper (one
// instance at a time, under a PostgreSQL advisory lock) deletes such rows
// every Config.SweepInterval.
//
// storage.Indexer keeps no index table: Index only records the name, and
// DeleteByValue scans the live rows whose values text holds "name": (the
// spelling the store writes) in key order, comparing storage.IndexValue
// forms in Go. Sessions written before Index are found.
//
// Liveness is judged by the clock of the Caddy host, not the database's:
// keep the instances' clocks in sync (NTP), as for the session cookies.
//
// # Atomicity
//
// Merge runs one short transaction: SELECT ... FOR UPDATE of the row,
// storage.Apply in Go (limits and key rules), then UPDATE, or INSERT ... ON
// CONFLICT DO NOTHING for a new session (retried when a concurrent creator
// won). The row lock serialises concurrent merges of one session; Delete
// and Rotate take the same lock, so a merge that began before either
// returns finds no row afterwards. Touch and Confirm are single UPDATEs
// that change no value. Rotate deletes any row at the new key and renames
// the old one, in one transaction.
//
// Every operation runs under Config.Timeout (default 500ms), so that a
// stalled server cannot hang requests; a failure to reach the database or
// answer in time is returned wrapping storage.ErrUnavailable.
package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/caddy-session/caddy-session/storage"
)

// Defaults for Config.
const (
	DefaultTable         = "caddy_sessions"
	DefaultTimeout       = 500 * time.Millisecond
	DefaultMaxConns      = 10
	DefaultSweepInterval = time.Minute
)

// sweepBatch is how many expired rows one sweeper statement deletes.
const sweepBatch = 1000

// scanBatch is how many rows DeleteByValue reads at a time.
const scanBatch = 500

// maxCreateRetries bounds how often Merge retries after losing a race to
// create the same session.
const maxCreateRetries = 5

// Config configures a Store.
type Config struct {
	// DSN is a PostgreSQL connection string (URL or key=value form), as
	// pgx accepts it.
	DSN string

	// Table is the table name, optionally schema-qualified
	// ("sessions.caddy"). Default caddy_sessions.
	Table string

	// MaxConns bounds the pool's connections. Default 10.
	MaxConns int

	// Timeout bounds each operation, waiting for a connection included.
	// Default 500ms.
	Timeout time.Duration

	// CreateTable creates the table and its index on first use when they
	// are missing (CREATE ... IF NOT EXISTS).
	CreateTable bool

	// SweepInterval is how often expired rows are deleted (default one
	// minute; negative turns the sweeper off). Expired rows are never
	// served either way.
	SweepInterval time.Duration
}

// Store is a PostgreSQL storage.Store. Create it with New, end it with
// Close.
type Store struct {
	pool    *pgxpool.Pool
	cfg     Config
	table   string // quoted identifier
	lockID  int64  // advisory lock of the sweeper and of table creation
	created bool   // the table is known to exist (under createMu)

	createMu sync.Mutex

	namesMu sync.Mutex
	names   map[string]int // indexed names, by how many configurations index them

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

var (
	_ storage.Store            = (*Store)(nil)
	_ storage.Confirmer        = (*Store)(nil)
	_ storage.VersionedDeleter = (*Store)(nil)
	_ storage.Counter          = (*Store)(nil)
	_ storage.Indexer          = (*Store)(nil)
)

// New returns a Store. It never connects: the pool dials on first use, so
// a database that is down at start-up only fails the requests that need it
// (with storage.ErrUnavailable). It fails on a malformed DSN or table name.
func New(cfg Config) (*Store, error) {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	parts := strings.Split(cfg.Table, ".")
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("postgres store: bad table name %q", cfg.Table)
		}
	}
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres store: parsing the DSN: %w", err)
	}
	pc.MaxConns = int32(cfg.MaxConns)
	pc.MinConns, pc.MinIdleConns = 0, 0 // never dial ahead of use
	if pc.ConnConfig.ConnectTimeout == 0 || pc.ConnConfig.ConnectTimeout > cfg.Timeout {
		pc.ConnConfig.ConnectTimeout = cfg.Timeout
	}
	// NewWithConfig dials nothing when MinConns and MinIdleConns are 0.
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	h := fnv.New64a()
	h.Write([]byte("caddy-session:" + cfg.Table))
	s := &Store{
		pool:    pool,
		cfg:     cfg,
		table:   pgx.Identifier(parts).Sanitize(),
		lockID:  int64(h.Sum64()),
		created: !cfg.CreateTable,
		names:   map[string]int{},
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if cfg.SweepInterval > 0 {
		go s.sweepEvery(cfg.SweepInterval)
	} else {
		close(s.done)
	}
	return s, nil
}

// Close stops the sweeper and closes the pool. It is idempotent.
func (s *Store) Close() error {
	s.stopOnce.Do(func() {
		close(s.stop)
		<-s.done
		s.pool.Close()
	})
	return nil
}

// unavailable wraps a database error as storage.ErrUnavailable.
func unavailable(op string, err error) error {
	return fmt.Errorf("postgres store: %s: %w: %w", op, storage.ErrUnavailable, err)
}

// begin returns the operation's context, bounded by Config.Timeout, after
// making sure the table exists when CreateTable is set.
func (s *Store) begin(ctx context.Context, op string) (context.Context, context.CancelFunc, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	if err := s.ensureTable(ctx); err != nil {
		cancel()
		return nil, nil, unavailable(op, err)
	}
	return ctx, cancel, nil
}

// ensureTable creates the table and its index when CreateTable is set and
// they have not been created yet. A failure is retried on the next call.
func (s *Store) ensureTable(ctx context.Context) error {
	s.createMu.Lock()
	defer s.createMu.Unlock()
	if s.created {
		return nil
	}
	idx := pgx.Identifier{lastPart(s.cfg.Table) + "_expires_idx"}.Sanitize()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Concurrent CREATE TABLE IF NOT EXISTS can still collide in
		// the catalog: take the store's lock around it.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.lockID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.table+` (
	key       text PRIMARY KEY,
	vals      text NOT NULL,
	created   timestamptz NOT NULL,
	deadline  timestamptz NOT NULL,
	expires   timestamptz NOT NULL,
	audience  text NOT NULL DEFAULT '',
	new_until timestamptz,
	rotated   boolean NOT NULL DEFAULT false,
	version   bigint NOT NULL DEFAULT 0
)`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE INDEX IF NOT EXISTS `+idx+` ON `+s.table+` (expires)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("creating table %s: %w", s.cfg.Table, err)
	}
	s.created = true
	return nil
}

func lastPart(table string) string {
	return table[strings.LastIndexByte(table, '.')+1:]
}

// encodeValues returns values as one compact JSON object, without HTML
// escaping, so that each value keeps its bytes.
func encodeValues(values map[string]json.RawMessage) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if values == nil {
		values = map[string]json.RawMessage{}
	}
	if err := enc.Encode(values); err != nil {
		return "", err
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

func decodeValues(text string) (map[string]json.RawMessage, error) {
	var v map[string]json.RawMessage
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		return nil, fmt.Errorf("postgres store: stored values are not a JSON object: %w", err)
	}
	if v == nil {
		v = map[string]json.RawMessage{}
	}
	return v, nil
}

// micro truncates t to what timestamptz keeps.
func micro(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

// row is one session as stored.
type row struct {
	vals                       string
	created, deadline, expires time.Time
	audience                   string
	newUntil                   *time.Time
	rotated                    bool // a tombstone of Rotate
	version                    int64
}

func (r *row) record() (*storage.Record, error) {
	v, err := decodeValues(r.vals)
	if err != nil {
		return nil, err
	}
	return &storage.Record{
		Values: v, Created: r.created, Deadline: r.deadline, Expires: r.expires,
		Audience: r.audience, New: r.newUntil != nil, Version: uint64(r.version),
	}, nil
}

const cols = `vals, created, deadline, expires, audience, new_until, rotated, version`

// unexpired is the condition of a row whose time has not run out at @now;
// live, of one that may be served (not a tombstone of Rotate).
const (
	unexpired = `expires > @now AND deadline > @now`
	live      = unexpired + ` AND NOT rotated`
)

func scanRow(r pgx.Row) (*row, error) {
	var x row
	if err := r.Scan(&x.vals, &x.created, &x.deadline, &x.expires, &x.audience, &x.newUntil, &x.rotated, &x.version); err != nil {
		return nil, err
	}
	return &x, nil
}

// Load returns the live session stored under key.
func (s *Store) Load(ctx context.Context, key string) (*storage.Record, error) {
	ctx, cancel, err := s.begin(ctx, "load")
	if err != nil {
		return nil, err
	}
	defer cancel()
	r, err := scanRow(s.pool.QueryRow(ctx, `SELECT `+cols+` FROM `+s.table+` WHERE key = @key AND `+unexpired,
		pgx.NamedArgs{"key": key, "now": time.Now()}))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, storage.ErrNotFound
	}
	if err != nil {
		return nil, unavailable("load", err)
	}
	if r.rotated {
		return nil, storage.ErrRotated
	}
	return r.record()
}

// errRetry marks a create that lost the race to a concurrent creator.
var errRetry = errors.New("retry")

// Merge applies patch to the session under key; see storage.Store and the
// package documentation for how it is made atomic.
//
// A session it creates is New when opts.NewTTL is positive; its new-session
// end (Created + NewTTL) is stored in new_until and caps its expiry until a
// merge with opts.Confirm, or Confirm, confirms it.
func (s *Store) Merge(ctx context.Context, key string, patch map[string]json.RawMessage, opts storage.MergeOptions) (*storage.Record, error) {
	ctx, cancel, err := s.begin(ctx, "merge")
	if err != nil {
		return nil, err
	}
	defer cancel()
	for range maxCreateRetries {
		var rec *storage.Record
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var err error
			rec, err = s.merge(ctx, tx, key, patch, opts)
			return err
		})
		if errors.Is(err, errRetry) {
			continue
		}
		if err != nil && !refusal(err) {
			// Begin or Commit failed: the database, not the merge.
			err = unavailable("merge", err)
		}
		return rec, err
	}
	return nil, unavailable("merge", errors.New("lost the race to create the session too many times"))
}

// refusal reports whether err is one Merge returns as it is: a miss, a
// merge refused by storage.Apply, or an error already wrapped.
func refusal(err error) bool {
	var ke *storage.KeyError
	var le *storage.LimitError
	var ve *storage.VersionError
	return errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrExists) || errors.Is(err, storage.ErrUnavailable) ||
		errors.As(err, &ve) ||
		errors.As(err, &ke) || errors.As(err, &le)
}

// rotatedAway looks again for a tombstone of Rotate under key, in a new
// statement: a Rotate that committed while SELECT ... FOR UPDATE waited
// for the row's lock moved the row away, and the tombstone that same
// transaction inserted is not in the waiting statement's snapshot (READ
// COMMITTED re-checks only the row it waited for).
func (s *Store) rotatedAway(ctx context.Context, tx pgx.Tx, key string, now time.Time) bool {
	var rotated bool
	err := tx.QueryRow(ctx, `SELECT rotated FROM `+s.table+` WHERE key = @key AND `+unexpired,
		pgx.NamedArgs{"key": key, "now": now}).Scan(&rotated)
	return err == nil && rotated
}

// merge is Merge's transaction.
func (s *Store) merge(ctx context.Context, tx pgx.Tx, key string, patch map[string]json.RawMessage, opts storage.MergeOptions) (*storage.Record, error) {
	now := time.Now()
	cur, err := scanRow(tx.QueryRow(ctx, `SELECT `+cols+` FROM `+s.table+` WHERE key = $1 FOR UPDATE`, key))
	exists := err == nil
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		cur = nil
	case err != nil:
		return nil, unavailable("merge", err)
	}
	if cur != nil && !(now.Before(cur.expires) && now.Before(cur.deadline)) {
		cur = nil // expired: as good as missing (the row is replaced)
	}
	if cur != nil && cur.rotated {
		return nil, storage.ErrRotated
	}
	if cur == nil && !opts.Create {
		if !exists && s.rotatedAway(ctx, tx, key, now) {
			return nil, storage.ErrRotated
		}
		return nil, storage.ErrNotFound
	}
	if cur != nil && opts.Create && opts.Exclusive {
		return nil, storage.ErrExists
	}
	if opts.CheckVersion {
		if cur == nil {
			return nil, storage.ErrNotFound
		}
		if uint64(cur.version) != opts.IfVersion {
			rec, err := cur.record()
			if err != nil {
				return nil, unavailable("merge", err)
			}
			return nil, &storage.VersionError{Current: rec}
		}
	}

	var current map[string]json.RawMessage
	next := row{created: micro(opts.Now), deadline: micro(opts.Deadline), audience: opts.Audience, version: int64(opts.Version)}
	if cur == nil {
		if opts.NewTTL > 0 {
			nu := micro(opts.Now.Add(opts.NewTTL))
			next.newUntil = &nu
		}
	} else {
		if current, err = decodeValues(cur.vals); err != nil {
			return nil, unavailable("merge", err)
		}
		next.created, next.deadline, next.audience = cur.created, cur.deadline, cur.audience
		next.version = int64(storage.NextVersion(uint64(cur.version), patch))
		if cur.newUntil != nil && !opts.Confirm {
			next.newUntil = cur.newUntil
		}
	}
	values, err := storage.Apply(current, patch, opts.Limits)
	if err != nil {
		return nil, err
	}
	if next.vals, err = encodeValues(values); err != nil {
		return nil, err
	}
	if !opts.SetDeadline.IsZero() {
		next.deadline = micro(opts.SetDeadline)
	}
	next.expires = micro(opts.ExpiresOf(next.created, next.deadline, next.newUntil != nil))
	if next.newUntil != nil && next.expires.After(*next.newUntil) {
		next.expires = *next.newUntil
	}

	args := pgx.NamedArgs{
		"key": key, "vals": next.vals, "created": next.created, "deadline": next.deadline,
		"expires": next.expires, "audience": next.audience, "new_until": next.newUntil, "rotated": false,
		"version": next.version,
	}
	if exists {
		_, err = tx.Exec(ctx, `UPDATE `+s.table+` SET vals = @vals, created = @created, deadline = @deadline,
	expires = @expires, audience = @audience, new_until = @new_until, rotated = false, version = @version WHERE key = @key`, args)
		if err != nil {
			return nil, unavailable("merge", err)
		}
	} else {
		tag, err := tx.Exec(ctx, `INSERT INTO `+s.table+` (key, `+cols+`)
	VALUES (@key, @vals, @created, @deadline, @expires, @audience, @new_until, @rotated, @version) ON CONFLICT (key) DO NOTHING`, args)
		if err != nil {
			return nil, unavailable("merge", err)
		}
		if tag.RowsAffected() == 0 {
			return nil, errRetry // a concurrent Merge created it: merge into that one
		}
	}
	return &storage.Record{
		Values: values, Created: next.created, Deadline: next.deadline, Expires: next.expires,
		Audience: next.audience, New: next.newUntil != nil, Version: uint64(next.version),
	}, nil
}

// Touch moves the expiry of a live session to expires, never past its
// deadline nor, while it is New, past new_until. One UPDATE; no value is
// rewritten.
func (s *Store) Touch(ctx context.Context, key string, expires time.Time) error {
	ctx, cancel, err := s.begin(ctx, "touch")
	if err != nil {
		return err
	}
	defer cancel()
	_, err = s.pool.Exec(ctx, `UPDATE `+s.table+`
	SET expires = LEAST(@expires::timestamptz, deadline, COALESCE(new_until, deadline))
	WHERE key = @key AND `+live, pgx.NamedArgs{"key": key, "expires": micro(expires), "now": time.Now()})
	if err != nil {
		return unavailable("touch", err)
	}
	return nil
}

// Confirm clears New on the live session under key and moves its expiry
// to expires, never past its deadline (storage.Confirmer). One UPDATE.
func (s *Store) Confirm(ctx context.Context, key string, expires time.Time) error {
	ctx, cancel, err := s.begin(ctx, "confirm")
	if err != nil {
		return err
	}
	defer cancel()
	_, err = s.pool.Exec(ctx, `UPDATE `+s.table+`
	SET expires = LEAST(@expires::timestamptz, deadline), new_until = NULL
	WHERE key = @key AND `+live, pgx.NamedArgs{"key": key, "expires": micro(expires), "now": time.Now()})
	if err != nil {
		return unavailable("confirm", err)
	}
	return nil
}

// Delete removes the session under key, if any.
func (s *Store) Delete(ctx context.Context, key string) error {
	ctx, cancel, err := s.begin(ctx, "delete")
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := s.pool.Exec(ctx, `DELETE FROM `+s.table+` WHERE key = $1`, key); err != nil {
		return unavailable("delete", err)
	}
	return nil
}

// Rotate moves the live session under oldKey to newKey, replacing whatever
// newKey held, in one transaction: the old row is renamed, so it keeps its
// values, times, audience and New state.
func (s *Store) Rotate(ctx context.Context, oldKey, newKey string) error {
	if oldKey == newKey {
		_, err := s.Load(ctx, oldKey)
		return err
	}
	ctx, cancel, err := s.begin(ctx, "rotate")
	if err != nil {
		return err
	}
	defer cancel()
	found := false
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM `+s.table+` WHERE key = $1`, newKey); err != nil {
			return err
		}
		now := time.Now()
		var expires time.Time
		err := tx.QueryRow(ctx, `UPDATE `+s.table+` SET key = @new WHERE key = @old AND `+live+` RETURNING expires`,
			pgx.NamedArgs{"new": newKey, "old": oldKey, "now": now}).Scan(&expires)
		if errors.Is(err, pgx.ErrNoRows) {
			return errRetry // roll back: leave newKey as it was
		}
		if err != nil {
			return err
		}
		found = true
		// The tombstone: for storage.RotationGrace (never past the
		// session's own expiry), the old key answers ErrRotated.
		until := micro(now.Add(storage.RotationGrace))
		if expires.Before(until) {
			until = expires
		}
		_, err = tx.Exec(ctx, `INSERT INTO `+s.table+` (key, `+cols+`)
	VALUES (@old, '{}', @now, @until, @until, '', NULL, true, 0)`, pgx.NamedArgs{"old": oldKey, "now": micro(now), "until": until})
		return err
	})
	switch {
	case !found && (err == nil || errors.Is(err, errRetry)):
		return storage.ErrNotFound
	case err != nil:
		return unavailable("rotate", err)
	}
	return nil
}

// DeleteVersion removes the live session under key if it is at version
// (storage.VersionedDeleter): one short transaction that locks the row.
func (s *Store) DeleteVersion(ctx context.Context, key string, version uint64) error {
	ctx, cancel, err := s.begin(ctx, "delete")
	if err != nil {
		return err
	}
	defer cancel()
	var refused error
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		now := time.Now()
		cur, err := scanRow(tx.QueryRow(ctx, `SELECT `+cols+` FROM `+s.table+` WHERE key = @key AND `+unexpired+` FOR UPDATE`,
			pgx.NamedArgs{"key": key, "now": now}))
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if s.rotatedAway(ctx, tx, key, now) {
				refused = storage.ErrRotated
			} else {
				refused = storage.ErrNotFound
			}
			return nil
		case err != nil:
			return err
		case cur.rotated:
			refused = storage.ErrRotated
			return nil
		case uint64(cur.version) != version:
			rec, err := cur.record()
			if err != nil {
				return err
			}
			refused = &storage.VersionError{Current: rec}
			return nil
		}
		_, err = tx.Exec(ctx, `DELETE FROM `+s.table+` WHERE key = $1`, key)
		return err
	})
	if err != nil {
		return unavailable("delete", err)
	}
	return refused
}

// Count returns how many live sessions the table holds (storage.Counter),
// exactly, with one query.
func (s *Store) Count(ctx context.Context) (storage.Counts, error) {
	ctx, cancel, err := s.begin(ctx, "count")
	if err != nil {
		return storage.Counts{}, err
	}
	defer cancel()
	var n, c int64
	err = s.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE new_until IS NOT NULL), count(*) FILTER (WHERE new_until IS NULL)
	FROM `+s.table+` WHERE `+live, pgx.NamedArgs{"now": time.Now()}).Scan(&n, &c)
	if err != nil {
		return storage.Counts{}, unavailable("count", err)
	}
	return storage.Counts{New: int(n), Confirmed: int(c)}, nil
}
