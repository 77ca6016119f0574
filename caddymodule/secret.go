package caddymodule

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-session/caddy-session/cookie"
)

// secretStorageKey is where the generated secret lives in Caddy's storage.
// Every instance that shares that storage shares the secret, and so its
// sessions.
const secretStorageKey = "caddy-session/secret"

// generatedSecretLogged makes the "using a generated secret" line appear
// once per process, not once per reload.
var generatedSecretLogged atomic.Bool

// secretSource loads the generated secret from Caddy's storage, and creates
// it on first use when it does not exist yet.
type secretSource struct {
	codec   atomic.Pointer[cookie.Codec] // configured or loaded; nil until then
	storage certmagic.Storage
	logger  *zap.Logger
	mu      sync.Mutex
}

// load returns the codec of the stored secret, or nil when there is none
// yet. It only reads, so caddy validate writes nothing.
func (s *secretSource) load(ctx context.Context) (*cookie.Codec, error) {
	b, err := s.storage.Load(ctx, secretStorageKey)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading the generated session secret from Caddy's storage (%s): %v; configure `secret` to avoid it", secretStorageKey, err)
	}
	secret, err := base64.RawURLEncoding.DecodeString(string(b))
	if err != nil || len(secret) < cookie.MinSecretLen {
		return nil, fmt.Errorf("the generated session secret in Caddy's storage (%s) is damaged; delete it to generate a new one (all sessions end), or configure `secret`", secretStorageKey)
	}
	c, err := cookie.NewCodec([][]byte{secret})
	if err != nil {
		return nil, err
	}
	if generatedSecretLogged.CompareAndSwap(false, true) {
		s.logger.Info("no session secret configured: using the generated one kept in Caddy's storage; instances sharing that storage share sessions",
			zap.String("storage_key", secretStorageKey))
	}
	return c, nil
}

// ensure returns the codec of the stored secret, creating the secret under
// Caddy's storage lock when it does not exist, so that instances starting
// together agree on one.
func (s *secretSource) ensure(ctx context.Context) (*cookie.Codec, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, err := s.load(ctx); c != nil || err != nil {
		return c, err
	}
	lockCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.storage.Lock(lockCtx, secretStorageKey); err != nil {
		return nil, fmt.Errorf("locking Caddy's storage to create the session secret: %v", err)
	}
	defer func() {
		if err := s.storage.Unlock(context.WithoutCancel(ctx), secretStorageKey); err != nil {
			s.logger.Error("unlocking Caddy's storage after creating the session secret", zap.Error(err))
		}
	}()
	// Another instance may have created it while we waited for the lock.
	if c, err := s.load(ctx); c != nil || err != nil {
		return c, err
	}
	secret := make([]byte, 48)
	rand.Read(secret)
	if err := s.storage.Store(ctx, secretStorageKey, []byte(base64.RawURLEncoding.EncodeToString(secret))); err != nil {
		return nil, fmt.Errorf("storing the generated session secret in Caddy's storage: %v; configure `secret` instead", err)
	}
	s.logger.Info("no session secret configured: generated one and kept it in Caddy's storage; instances sharing that storage share sessions",
		zap.String("storage_key", secretStorageKey))
	generatedSecretLogged.Store(true)
	return cookie.NewCodec([][]byte{secret})
}
