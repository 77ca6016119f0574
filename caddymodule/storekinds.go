package caddymodule

// Optional interfaces of a store module (http.session.stores) that tell
// the handler where it keeps sessions. The built-in stores implement them;
// a third-party store may, and without them is taken to be shared by
// every instance (as Redis and PostgreSQL are) and named by its own
// address.

// StoreIdentifier names the place a store module keeps sessions: the same
// for every handler, in every loaded config, that shares them (a memory
// pool, a directory, a Redis server, a PostgreSQL table), so that the
// admin API acts once per store.
type StoreIdentifier interface {
	StoreIdentity() string
}

// HostLocalStore is a store module whose sessions live on one host only:
// in Caddy's process (inProcess: only the running Caddy can read them, so
// `caddy session decode` asks its admin API), or in dir on this host's
// disk. Caddy warns when it sees signs of several instances (a shared
// Caddy storage, a network filesystem under dir).
type HostLocalStore interface {
	SessionsOnHost() (inProcess bool, dir string)
}

// StoreIdentity implements StoreIdentifier: the pool.
func (m *MemoryStore) StoreIdentity() string { return "memory\x00" + m.poolKey }

// SessionsOnHost implements HostLocalStore: in Caddy's process.
func (m *MemoryStore) SessionsOnHost() (bool, string) { return true, "" }

// StoreIdentity implements StoreIdentifier: the directory.
func (f *FileStore) StoreIdentity() string { return "file\x00" + f.dir() }

// SessionsOnHost implements HostLocalStore: in the directory.
func (f *FileStore) SessionsOnHost() (bool, string) { return false, f.dir() }

// dir is the store's directory once provisioned, else "".
func (f *FileStore) dir() string {
	if f.Store == nil {
		return ""
	}
	return f.Store.Dir()
}

// StoreIdentity implements StoreIdentifier: the Redis client's config.
func (s *RedisStore) StoreIdentity() string { return "redis\x00" + s.poolKey }

// StoreIdentity implements StoreIdentifier: the database and table (a
// hash of the resolved DSN and table name), whatever the pool's settings.
func (s *PostgresStore) StoreIdentity() string { return s.identity }

// Interface guards
var (
	_ StoreIdentifier = (*MemoryStore)(nil)
	_ HostLocalStore  = (*MemoryStore)(nil)
	_ StoreIdentifier = (*FileStore)(nil)
	_ HostLocalStore  = (*FileStore)(nil)
	_ StoreIdentifier = (*RedisStore)(nil)
	_ StoreIdentifier = (*PostgresStore)(nil)
)
