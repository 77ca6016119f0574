package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// maxSweepBatches bounds how many batches one sweep deletes, so that the
// sweeper's transaction stays short; the next sweep deletes the rest.
const maxSweepBatches = 100

// sweepEvery runs Sweep every interval until Close.
func (s *Store) sweepEvery(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-s.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			_, _ = s.Sweep(ctx) // an unreachable database is retried next time
			cancel()
		}
	}
}

// Sweep deletes expired rows, in batches of sweepBatch, each under
// Config.Timeout, and returns how many it deleted. Only one instance
// sweeps a table at a time: each batch runs in a transaction that first
// takes a PostgreSQL advisory lock (pg_try_advisory_xact_lock) and deletes
// nothing when another instance holds it. Expired rows are never served
// whether swept or not.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	total := 0
	for range maxSweepBatches {
		n, err := s.sweepBatch(ctx)
		total += n
		if err != nil || n < sweepBatch {
			return total, err
		}
	}
	return total, nil
}

func (s *Store) sweepBatch(ctx context.Context) (int, error) {
	ctx, cancel, err := s.begin(ctx, "sweep")
	if err != nil {
		return 0, err
	}
	defer cancel()
	n := 0
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var got bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, s.lockID).Scan(&got); err != nil || !got {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM `+s.table+` WHERE key IN (
	SELECT key FROM `+s.table+` WHERE expires <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`, time.Now(), sweepBatch)
		if err != nil {
			return err
		}
		n = int(tag.RowsAffected())
		return nil
	})
	if err != nil {
		return 0, unavailable("sweep", err)
	}
	return n, nil
}
