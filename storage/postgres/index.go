package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddy-session/caddy-session/storage"
)

// Index records that name is indexed (storage.Indexer). The store keeps no
// index table: DeleteByValue scans the rows whose values text holds the
// name, so sessions written before Index are found too.
func (s *Store) Index(name string) (release func()) {
	s.namesMu.Lock()
	s.names[name]++
	s.namesMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.namesMu.Lock()
			if s.names[name]--; s.names[name] <= 0 {
				delete(s.names, name)
			}
			s.namesMu.Unlock()
		})
	}
}

func (s *Store) indexed(name string) bool {
	s.namesMu.Lock()
	defer s.namesMu.Unlock()
	return s.names[name] > 0
}

// DeleteByValue deletes every live session whose value of name equals value
// as a JSON value (storage.Indexer). It reads the live rows whose values
// text contains "name": in batches of scanBatch, in key order (each batch
// under its own Config.Timeout), compares storage.IndexValue forms in Go,
// and deletes each match with a compare on the values text it read: a
// session rewritten meanwhile is left alone.
func (s *Store) DeleteByValue(ctx context.Context, name string, value json.RawMessage, audience string) (map[string]int, error) {
	if !s.indexed(name) {
		return nil, fmt.Errorf("postgres store: %q: %w", name, storage.ErrNotIndexed)
	}
	want, err := storage.IndexValue(value)
	if err != nil {
		return nil, err
	}
	pattern, err := json.Marshal(name)
	if err != nil {
		return nil, err
	}
	pattern = append(pattern, ':')
	counts := map[string]int{}
	after := ""
	for {
		n, last, err := s.deleteBatch(ctx, name, string(pattern), want, audience, after, counts)
		if err != nil {
			return counts, err
		}
		if n < scanBatch {
			return counts, nil
		}
		after = last
	}
}

type candidate struct{ key, vals, audience string }

// deleteBatch scans one batch of rows after key after, deletes the matches
// and adds them to counts. It returns how many rows it read and the last
// key.
func (s *Store) deleteBatch(ctx context.Context, name, pattern string, want []byte, audience, after string, counts map[string]int) (int, string, error) {
	ctx, cancel, err := s.begin(ctx, "delete by value")
	if err != nil {
		return 0, "", err
	}
	defer cancel()
	q := `SELECT key, vals, audience FROM ` + s.table + ` WHERE key > @after AND ` + live +
		` AND strpos(vals, @pattern) > 0`
	args := pgx.NamedArgs{"after": after, "now": time.Now(), "pattern": pattern, "limit": scanBatch}
	if audience != "" {
		q += ` AND audience = @audience`
		args["audience"] = audience
	}
	q += ` ORDER BY key LIMIT @limit`
	rows, err := s.pool.Query(ctx, q, args)
	if err != nil {
		return 0, "", unavailable("delete by value", err)
	}
	var cands []candidate
	for rows.Next() {
		var c candidate
		if err := rows.Scan(&c.key, &c.vals, &c.audience); err != nil {
			rows.Close()
			return 0, "", unavailable("delete by value", err)
		}
		cands = append(cands, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, "", unavailable("delete by value", err)
	}
	last := ""
	for _, c := range cands {
		last = c.key
		v, err := decodeValues(c.vals)
		if err != nil {
			continue // not ours to judge: leave the row alone
		}
		raw, ok := v[name]
		if !ok || storage.IsNull(raw) {
			continue
		}
		got, err := storage.IndexValue(raw)
		if err != nil || !bytes.Equal(got, want) {
			continue
		}
		tag, err := s.pool.Exec(ctx, `DELETE FROM `+s.table+` WHERE key = $1 AND vals = $2`, c.key, c.vals)
		if err != nil {
			return 0, "", unavailable("delete by value", err)
		}
		if tag.RowsAffected() == 1 {
			counts[c.audience]++
		}
	}
	return len(cands), last, nil
}
