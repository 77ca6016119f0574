package caddymodule

import (
	"fmt"
	"math"
	"strconv"

	"github.com/dustin/go-humanize"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-session/caddy-session/storage"
	"github.com/caddy-session/caddy-session/storage/memory"
)

func init() {
	caddy.RegisterModule(MemoryStore{})
}

// memoryPools holds the memory stores by identity (name and bound), so a
// config reload finds the same sessions, and a store lives as long as one
// config uses it.
var memoryPools = caddy.NewUsagePool()

// MemoryStore keeps sessions in Caddy's process: fast, bounded (least
// recently used sessions go first), kept across config reloads, lost on
// restart, and private to one Caddy instance (use Redis to share sessions
// between instances). Handlers that name the same pool share its sessions.
type MemoryStore struct {
	// The pool's name: handlers naming the same pool (with the same
	// max_sessions) share sessions. Default: "default".
	Name string `json:"name,omitempty"`

	// The most sessions the pool holds; past it, new (unconfirmed)
	// sessions go first, oldest first, then the least recently used
	// confirmed ones. Default: 100000.
	MaxSessions int `json:"max_sessions,omitempty"`

	// The most bytes the pool's sessions take, counting each session's
	// encoded size plus its bookkeeping; past it, sessions go as past
	// max_sessions. Default: 268435456 (256 MiB).
	MaxBytes int64 `json:"max_bytes,omitempty"`

	// The open store, set by Provision: its methods (storage.Store and
	// the optional interfaces) are the module's.
	*memory.Store `json:"-"`

	poolKey string
}

// CaddyModule returns the Caddy module information.
func (MemoryStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.session.stores.memory",
		New: func() caddy.Module { return new(MemoryStore) },
	}
}

// Provision finds or creates the pool.
func (m *MemoryStore) Provision(caddy.Context) error {
	if m.Name == "" {
		m.Name = "default"
	}
	if m.MaxSessions == 0 {
		m.MaxSessions = memory.DefaultMaxSessions
	}
	if m.MaxSessions < 0 {
		return fmt.Errorf("memory store max_sessions %d: must be positive", m.MaxSessions)
	}
	if m.MaxBytes == 0 {
		m.MaxBytes = memory.DefaultMaxBytes
	}
	if m.MaxBytes < 0 {
		return fmt.Errorf("memory store max_bytes %d: must be positive", m.MaxBytes)
	}
	m.poolKey = m.Name + "\x00" + strconv.Itoa(m.MaxSessions) + "\x00" + strconv.FormatInt(m.MaxBytes, 10)
	v, _, err := memoryPools.LoadOrNew(m.poolKey, func() (caddy.Destructor, error) {
		return memoryPool{memory.New(memory.Options{MaxSessions: m.MaxSessions, MaxBytes: m.MaxBytes})}, nil
	})
	if err != nil {
		return err
	}
	m.Store = v.(memoryPool).Store
	return nil
}

// Cleanup releases this config's hold on the pool; the last one closes it.
func (m *MemoryStore) Cleanup() error {
	if m.poolKey == "" {
		return nil
	}
	_, err := memoryPools.Delete(m.poolKey)
	return err
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	store memory {
//		name         <pool>
//		max_sessions <n>
//		max_bytes    <size>
//	}
func (m *MemoryStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // store name
	if d.NextArg() {
		return d.ArgErr()
	}
	return parseBlock(d, "subdirective %q of store memory", subdirectives{
		"name":         setString(&m.Name),
		"max_sessions": setInt(&m.MaxSessions, 1, 0),
		"max_bytes": func(d *caddyfile.Dispenser) error {
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			n, err := humanize.ParseBytes(v)
			if err != nil || n < 1 || n > math.MaxInt64 {
				return d.Errf("max_bytes %q: want a size such as 256MiB", v)
			}
			m.MaxBytes = int64(n)
			return nil
		},
	})
}

// memoryPool lets the usage pool close a store when no config uses it.
type memoryPool struct{ *memory.Store }

// Destruct stops the pool's sweeper.
func (p memoryPool) Destruct() error { return p.Close() }

// Interface guards
var (
	_ caddy.Provisioner     = (*MemoryStore)(nil)
	_ caddy.CleanerUpper    = (*MemoryStore)(nil)
	_ caddyfile.Unmarshaler = (*MemoryStore)(nil)
	_ storage.Store         = (*MemoryStore)(nil)
	_ storage.Confirmer     = (*MemoryStore)(nil)
	_ storage.Counter       = (*MemoryStore)(nil)
	_ storage.Indexer       = (*MemoryStore)(nil)
)
