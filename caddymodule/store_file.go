package caddymodule

import (
	"errors"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddy-session/caddy-session/storage"
	"github.com/caddy-session/caddy-session/storage/file"
)

func init() {
	caddy.RegisterModule(FileStore{})
}

// FileStore keeps one file per session in a directory: sessions survive
// restarts, writes are atomic (a crash never leaves a torn session), and
// several Caddy processes on one host may share the directory. File names
// are hashes of session IDs, never the IDs. Files are 0600 in a 0700
// directory; expired ones are swept periodically.
type FileStore struct {
	// The directory (created if missing). Placeholders allowed.
	Dir string `json:"dir,omitempty"`

	// How often expired session files are removed. Default: 5m.
	SweepInterval caddy.Duration `json:"sweep_interval,omitempty"`

	// The open store, set by Provision: its methods (storage.Store and
	// the optional interfaces) are the module's.
	*file.Store `json:"-"`
}

// CaddyModule returns the Caddy module information.
func (FileStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.session.stores.file",
		New: func() caddy.Module { return new(FileStore) },
	}
}

// Provision opens the directory.
func (f *FileStore) Provision(ctx caddy.Context) error {
	dir := caddy.NewReplacer().ReplaceAll(f.Dir, "")
	if dir == "" {
		return errors.New("store file needs a directory: store file /var/lib/caddy/sessions")
	}
	logger := ctx.Logger()
	st, err := file.New(dir, file.Options{
		SweepInterval: time.Duration(f.SweepInterval),
		OnCorrupt: func(path string, err error) {
			logger.Error("removed a session file that does not decode; it is read as no session",
				zap.String("path", path), zap.Error(err))
		},
	})
	if err != nil {
		return err
	}
	f.Store = st
	return nil
}

// Cleanup stops the sweeper.
func (f *FileStore) Cleanup() error {
	if f.Store == nil {
		return nil
	}
	return f.Store.Close()
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens. Syntax:
//
//	store file <dir> {
//		sweep_interval <duration>
//	}
func (f *FileStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // store name
	if !d.AllArgs(&f.Dir) {
		return d.Err("store file needs exactly one argument, the directory: store file /var/lib/caddy/sessions")
	}
	return parseBlock(d, "subdirective %q of store file", subdirectives{
		"sweep_interval": setDuration(&f.SweepInterval),
	})
}

// Interface guards
var (
	_ caddy.Provisioner     = (*FileStore)(nil)
	_ caddy.CleanerUpper    = (*FileStore)(nil)
	_ caddyfile.Unmarshaler = (*FileStore)(nil)
	_ storage.Store         = (*FileStore)(nil)
	_ storage.Confirmer     = (*FileStore)(nil)
	_ storage.Counter       = (*FileStore)(nil)
	_ storage.Indexer       = (*FileStore)(nil)
)
