package caddymodule

import (
	"context"
	"encoding/json"

	"github.com/caddy-session/caddy-session/storage"
)

// The store modules embed the open store as a storage.Store, which carries
// only the Store methods; these pass on the optional interfaces that the
// admin API uses (storage.Counter, storage.Indexer). A third-party store
// module implements them on itself.

// Count returns how many live sessions the pool holds.
func (m *MemoryStore) Count(ctx context.Context) (int, error) { return m.store.Count(ctx) }

// Index starts indexing the pool's sessions by name (exact, kept on write).
func (m *MemoryStore) Index(name string) func() { return m.store.Index(name) }

// DeleteByValue deletes the pool's sessions whose name holds value.
func (m *MemoryStore) DeleteByValue(ctx context.Context, name string, value json.RawMessage) (int, error) {
	return m.store.DeleteByValue(ctx, name, value)
}

// Count returns how many unexpired session files the directory holds.
func (f *FileStore) Count(ctx context.Context) (int, error) { return f.store.Count(ctx) }

// Index makes name searchable; the file store searches by a full scan.
func (f *FileStore) Index(name string) func() { return f.store.Index(name) }

// DeleteByValue deletes the sessions whose name holds value, reading every
// session file.
func (f *FileStore) DeleteByValue(ctx context.Context, name string, value json.RawMessage) (int, error) {
	return f.store.DeleteByValue(ctx, name, value)
}

// Count returns about how many sessions Redis holds under the key prefix
// (SCAN).
func (s *RedisStore) Count(ctx context.Context) (int, error) { return s.store.Count(ctx) }

// Index starts indexing sessions by name: one sorted set per value.
func (s *RedisStore) Index(name string) func() { return s.store.Index(name) }

// DeleteByValue deletes the sessions whose name holds value, through the
// value's index set.
func (s *RedisStore) DeleteByValue(ctx context.Context, name string, value json.RawMessage) (int, error) {
	return s.store.DeleteByValue(ctx, name, value)
}

// Interface guards
var (
	_ storage.Counter = (*MemoryStore)(nil)
	_ storage.Indexer = (*MemoryStore)(nil)
	_ storage.Counter = (*FileStore)(nil)
	_ storage.Indexer = (*FileStore)(nil)
	_ storage.Counter = (*RedisStore)(nil)
	_ storage.Indexer = (*RedisStore)(nil)
)
