package caddymodule

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "session",
		Usage: "secret | decode [--config <file>] [--adapter <name>] [--id <admin_id>] [--audience <host>] <cookie value>",
		Short: "Helpers for the session handler: make a secret, decode a session cookie",
		Long: `
Helpers for caddy-session's http.handlers.session.

  caddy session secret
      Prints a new random secret for the session handler's "secret"
      (48 random bytes, base64): put it in SESSION_SECRET and write
      "secret {env.SESSION_SECRET}".

  caddy session decode [--config <file>] [--adapter <name>] [--id <admin_id>] [--audience <host>] <cookie value>
      Loads the config (./Caddyfile when --config is not given, as caddy
      run does; without starting anything), finds its session
      handlers, and decodes the cookie value with their secrets, under the
      audience it was issued for: the host name that set it (--audience),
      unless the handler's audience is fixed (audience, or cookie domain). It prints
      the session as JSON: for the cookie store, the data inside the
      cookie; for a server store, the session's data read from the store
      (the memory store through the running Caddy's admin API), or, when
      the store cannot be reached, the session's short keyed hash. It never
      prints a session ID. Exit status 1 when no handler's secrets verify
      the value. It logs nothing: errors go to stderr, the session to
      stdout.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Args = cobra.NoArgs
			cmd.AddCommand(&cobra.Command{
				Use:   "secret",
				Short: "Prints a new random secret for the session handler",
				Args:  cobra.NoArgs,
				RunE: func(cmd *cobra.Command, _ []string) error {
					_, err := fmt.Fprintln(cmd.OutOrStdout(), newSecret())
					return err
				},
			})
			decode := &cobra.Command{
				Use:   "decode [--config <file>] [--adapter <name>] [--id <admin_id>] [--audience <host>] <cookie value>",
				Short: "Prints the session a cookie value holds, decoded with the config's secrets",
				Args:  cobra.ExactArgs(1),
				RunE: func(cmd *cobra.Command, args []string) error {
					fl := cmd.Flags()
					config, _ := fl.GetString("config")
					adapter, _ := fl.GetString("adapter")
					id, _ := fl.GetString("id")
					audience, _ := fl.GetString("audience")
					code, err := decodeCommand(cmd.OutOrStdout(), config, adapter, id, cookieBody{Cookie: args[0], Audience: audience})
					if err != nil {
						fmt.Fprintln(cmd.ErrOrStderr(), "caddy session decode:", err)
					}
					if code != 0 {
						cmd.SilenceUsage, cmd.SilenceErrors = true, true
						os.Exit(code)
					}
					return nil
				},
			}
			decode.Flags().StringP("config", "c", "", "Configuration file (default: ./Caddyfile)")
			decode.Flags().StringP("adapter", "a", "", "Name of the config adapter (caddyfile for a Caddyfile not named so)")
			decode.Flags().String("id", "", "Only the session handler with this admin_id (default: every one)")
			decode.Flags().String("audience", "", "The host name the cookie was issued for (sessions are bound to their site); not needed when the handler's audience is fixed")
			cmd.AddCommand(decode)
		},
	})
}

// newSecret returns 48 random bytes in standard base64 (64 characters),
// far past the 32 bytes a secret needs.
func newSecret() string {
	b := make([]byte, 48)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// decodeCommand runs `caddy session decode` and returns its exit status.
func decodeCommand(out io.Writer, configFile, adapter, id string, value cookieBody) (int, error) {
	// Caddy logs to stderr as it loads a config (the file it reads, the
	// adapter's warnings, each module's provisioning): this command
	// prints only the session, or an error.
	if err := silenceCaddyLog(); err != nil {
		return 2, err
	}
	cfgJSON, _, _, err := caddycmd.LoadConfig(configFile, adapter)
	if err != nil {
		return 2, err
	}
	if len(cfgJSON) == 0 {
		if configFile == "" {
			return 2, errors.New("no config: give --config <file>, or run it in the directory of your Caddyfile")
		}
		return 2, errors.New("the config is empty")
	}
	adminAddr, _ := caddycmd.DetermineAdminAPIAddress("", cfgJSON, configFile, adapter)

	var cfg caddy.Config
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return 2, fmt.Errorf("decoding the config: %v", err)
	}
	// Provision only: no listener, no admin endpoint; and the config's
	// logs stay untouched (this process logs nothing).
	cfg.Admin, cfg.Logging = nil, quietLogging()
	before := handlerIDs()
	if _, err := caddy.ProvisionContext(&cfg); err != nil {
		return 2, fmt.Errorf("loading the config: %v", err)
	}

	var handlers []*Handler
	ids := handlerIDs()
	names := make([]string, 0, len(ids))
	for name := range ids {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if id != "" && name != id {
			continue
		}
		for _, h := range ids[name] {
			if !contains(before[name], h) {
				handlers = append(handlers, h)
			}
		}
	}
	if len(handlers) == 0 {
		if id != "" {
			return 2, fmt.Errorf("the config has no session handler with admin_id %q", id)
		}
		return 2, errors.New("the config has no session handler")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, err := decodeCookie(ctx, handlers, value)
	if err != nil {
		return 1, fmt.Errorf("the cookie value does not verify with the secrets of any session handler in the config: %s", errorMessage(err))
	}
	d := ds[0]
	h := d.h
	var info *sessionInfo
	if local, ok := h.ops.raw.(HostLocalStore); ok && inProcess(local) {
		// The sessions live in the running Caddy: ask it.
		info, err = inspectThroughAdmin(adminAddr, h.ops.id, value)
	} else {
		info, err = inspectCookie(ctx, []*Handler{h}, value)
	}
	if err != nil {
		info = &sessionInfo{ID: h.ops.id, Store: h.storeName, Session: d.ref(), Stale: d.v.stale,
			Note: "the session's data could not be read: " + errorMessage(err)}
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return 0, enc.Encode(info)
}

// quietLogging is a logging config whose default log takes only fatal
// entries. It keeps Caddy's default writer (stderr), so switching to it
// logs no "redirected default logger" line either.
func quietLogging() *caddy.Logging {
	return &caddy.Logging{Logs: map[string]*caddy.CustomLog{
		caddy.DefaultLoggerName: {BaseLog: caddy.BaseLog{Level: "fatal"}},
	}}
}

// silenceCaddyLog makes Caddy's default logger quiet for the rest of the
// process, by provisioning an empty config with quietLogging.
func silenceCaddyLog() error {
	_, err := caddy.ProvisionContext(&caddy.Config{Logging: quietLogging()})
	if err != nil {
		return fmt.Errorf("setting up the log: %v", err)
	}
	return nil
}

// inProcess reports whether a store keeps its sessions in Caddy's process.
func inProcess(s HostLocalStore) bool {
	p, _ := s.SessionsOnHost()
	return p
}

// inspectThroughAdmin asks a running Caddy's admin API for a session.
func inspectThroughAdmin(adminAddr, id string, value cookieBody) (*sessionInfo, error) {
	if adminAddr == "" {
		return nil, errors.New("the config disables the admin API, through which the memory store is read")
	}
	body, _ := json.Marshal(value)
	resp, err := caddycmd.AdminAPIRequest(adminAddr, http.MethodPost, "/session/"+id+"/inspect",
		http.Header{"Content-Type": {"application/json"}}, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("the memory store lives in the running Caddy, whose admin API at %s did not answer: %v", adminAddr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		return nil, fmt.Errorf("the running Caddy's admin API answered %d: %s", resp.StatusCode, e.Error)
	}
	info := new(sessionInfo)
	if err := json.Unmarshal(b, info); err != nil {
		return nil, fmt.Errorf("the running Caddy's admin API answered with something else than a session: %v", err)
	}
	return info, nil
}

// errorMessage returns an error's message, unwrapping the admin API's.
func errorMessage(err error) string {
	var apiErr caddy.APIError
	if errors.As(err, &apiErr) && apiErr.Err != nil {
		return apiErr.Err.Error()
	}
	return err.Error()
}

func contains(list []*Handler, h *Handler) bool {
	for _, x := range list {
		if x == h {
			return true
		}
	}
	return false
}
