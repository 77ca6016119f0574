package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-session/caddy-session/storage"
)

func TestCaddyfileOpsOptions(t *testing.T) {
	h := new(Handler)
	d := caddyfile.NewTestDispenser("session {\n index_key customerId\n admin_id shop-1\n}")
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if h.IndexKey != "customerId" || h.AdminID != "shop-1" {
		t.Fatalf("index_key %q, admin_id %q", h.IndexKey, h.AdminID)
	}
	for _, bad := range []string{
		"session {\n index_key\n}",
		"session {\n index_key a b\n}",
		"session {\n admin_id a\n admin_id b\n}",
	} {
		if err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// provisionErr provisions a handler from JSON and returns the error.
func provisionErr(t *testing.T, config string) error {
	t.Helper()
	h := new(Handler)
	if err := json.Unmarshal([]byte(config), h); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	err := h.Provision(ctx)
	if err != nil {
		h.Cleanup() // as Caddy does after a failed Provision
	}
	return err
}

func TestProvisionOpsErrors(t *testing.T) {
	for config, want := range map[string]string{
		`{"secrets":["` + testSecret + `"],"index_key":"customerId","admin_id":"provfail"}`:                                      "index_key needs a server store",
		`{"secrets":["` + testSecret + `"],"index_key":"1x","admin_id":"provfail","store":{"backend":"memory","name":"opsErr"}}`: "index_key: invalid key",
		`{"secrets":["` + testSecret + `"],"admin_id":"a/b"}`:                                                                    "admin_id",
	} {
		err := provisionErr(t, config)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", config, err, want)
		}
	}
	if len(handlersFor("provfail")) != 0 {
		t.Fatal("a handler whose Provision failed is still registered")
	}
}

// The admin API finds provisioned handlers by id until their Cleanup; an
// id may have several (a reload overlaps old and new).
func TestRegistry(t *testing.T) {
	cfg := `{"secrets":["` + testSecret + `"],"admin_id":"regtest","store":{"backend":"memory","name":"regtest"},"index_key":"customerId"}`
	a, b := newTestHandler(t, cfg), newTestHandler(t, cfg)
	if got := handlersFor("regtest"); len(got) != 2 || got[0] != b {
		t.Fatalf("handlersFor = %v, want the newest first", got)
	}
	if len(distinctStores(handlersFor("regtest"), func(*Handler) bool { return true })) != 1 {
		t.Fatal("two handlers on one memory pool count as two stores")
	}
	a.Cleanup()
	a.Cleanup() // twice: no effect
	if got := handlersFor("regtest"); len(got) != 1 || got[0] != b {
		t.Fatalf("after a's Cleanup: %v", got)
	}
	b.Cleanup()
	if _, ok := handlerIDs()["regtest"]; ok {
		t.Fatal("the id outlived its handlers")
	}
}

// The collectors register with a registry once and with every new one,
// and a pedantic registry (Caddy's) gathers them.
func TestRegisterMetrics(t *testing.T) {
	h := newTestHandler(t, `{"secrets":["`+testSecret+`"],"admin_id":"metrictest","store":{"backend":"memory","name":"metrictest"},"client_writable":["n"]}`)
	establish(t, h, `{"n":1}`)
	for range 2 {
		reg := prometheus.NewPedanticRegistry()
		for range 2 {
			if err := registerMetrics(reg); err != nil {
				t.Fatal(err)
			}
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]bool{}
		for _, mf := range mfs {
			found[mf.GetName()] = true
		}
		for _, name := range []string{"caddy_session_created_total", "caddy_session_memory_sessions", "caddy_session_store_operation_duration_seconds"} {
			if !found[name] {
				t.Errorf("no %s gathered", name)
			}
		}
	}
}

// Counting costs no allocation on the request path.
func TestMetricsAllocs(t *testing.T) {
	m := newHandlerMetrics("alloctest", "memory")
	m.apiRequest("GET", 200)
	st := newInstrumentedStore(storeStub{}, "alloctest", "stub")
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() {
		m.count(evLoaded)
		m.apiRequest("GET", 200)
		m.cookie(300, 1)
		_, _ = st.Load(ctx, "k")
	}); n != 0 {
		t.Fatalf("%v allocations per request for metrics", n)
	}
	var nilMetrics *handlerMetrics
	nilMetrics.count(evLoaded) // no metrics: no panic
	nilMetrics.apiRequest("GET", 200)
}

type storeStub struct{ storage.Store }

func (storeStub) Load(context.Context, string) (*storage.Record, error) {
	return nil, storage.ErrNotFound
}

// The admin API through its handler, without a Caddy around it.
func TestAdminAPIMemory(t *testing.T) {
	cfg := `{"secrets":["` + testSecret + `"],"admin_id":"admintest","store":{"backend":"memory","name":"admintest"},"index_key":"customerId","client_writable":["customerId","n"]}`
	h := newTestHandler(t, cfg)
	t.Cleanup(func() { h.Cleanup() })
	var cookies []string
	for i := range 5 {
		id := `"c_1"`
		if i >= 3 {
			id = `"c_2"`
		}
		cookies = append(cookies, establish(t, h, `{"customerId":`+id+`}`))
	}
	api := new(AdminAPI)
	call := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		w := httptest.NewRecorder()
		err := api.serve(w, r)
		if err != nil {
			var apiErr caddy.APIError
			if !asAPIError(err, &apiErr) {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			return apiErr.HTTPStatus, nil
		}
		var m map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &m)
		return http.StatusOK, m
	}
	if code, m := call("GET", "/session/admintest/count", ""); code != 200 || m["sessions"] != 5.0 {
		t.Fatalf("count: %d %v", code, m)
	}
	value := strings.TrimPrefix(cookies[0], "__session=")
	// A cookie is bound to the host that issued it (httptest's
	// example.com): inspect needs it, and another host's is no session.
	if code, _ := call("POST", "/session/admintest/inspect", `{"cookie":"`+value+`"}`); code != 400 {
		t.Fatalf("inspect without the audience: %d, want 400", code)
	}
	if code, _ := call("POST", "/session/admintest/inspect", `{"cookie":"`+value+`","audience":"other.example"}`); code != 400 {
		t.Fatalf("inspect under another audience: %d, want 400", code)
	}
	if code, m := call("POST", "/session/admintest/inspect", `{"cookie":"`+value+`","audience":"Example.COM:443"}`); code != 200 || m["values"].(map[string]any)["customerId"] != "c_1" {
		t.Fatalf("inspect: %d %v", code, m)
	}
	if code, m := call("POST", "/session/admintest/logout-everywhere", `{"value":"c_1"}`); code != 200 || m["destroyed"] != 3.0 {
		t.Fatalf("logout-everywhere: %d %v", code, m)
	}
	if code, _ := call("POST", "/session/admintest/inspect", `{"cookie":"`+value+`","audience":"example.com"}`); code != 404 {
		t.Fatalf("inspect of a logged-out session: %d", code)
	}
	if code, m := call("GET", "/session/admintest/count", ""); code != 200 || m["sessions"] != 2.0 {
		t.Fatalf("count after: %d %v", code, m)
	}
	if code, _ := call("POST", "/session/admintest/inspect", `{"cookie":"x","extra":1}`); code != 400 {
		t.Fatalf("an unknown field: %d", code)
	}
}

func asAPIError(err error, target *caddy.APIError) bool {
	e, ok := err.(caddy.APIError)
	if ok {
		*target = e
	}
	return ok
}

// A per-host store draws a warning where Caddy's storage is shared.
func TestMultiInstanceWarnings(t *testing.T) {
	local := &certmagic.FileStorage{Path: t.TempDir()}
	shared := sharedStorage{local}
	mem := &MemoryStore{}
	if w := multiInstanceWarnings("memory", mem, local); len(w) != 0 {
		t.Fatalf("memory store on local storage: %q", w)
	}
	if w := multiInstanceWarnings("memory", mem, shared); len(w) != 1 || !strings.Contains(w[0], "store redis") {
		t.Fatalf("memory store on shared storage: %q", w)
	}
	if w := multiInstanceWarnings("redis", &RedisStore{}, shared); len(w) != 0 {
		t.Fatalf("redis store: %q", w)
	}
	if w := multiInstanceWarnings("memory", mem, nil); len(w) != 0 {
		t.Fatalf("no storage known: %q", w)
	}
	if fs := networkFilesystem(t.TempDir()); fs != "" {
		t.Logf("the test's temporary directory is on %s", fs) // a CI oddity, not a failure
	}
}

// sharedStorage stands for a storage module other than the filesystem.
type sharedStorage struct{ certmagic.Storage }

// TestConfigStorage: a context of no config has no storage (and asking
// does not panic); configStorage's check rests on caddy.Context's cfg
// field, a pointer.
func TestConfigStorage(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if st := configStorage(ctx); st != nil {
		t.Fatalf("a context without a config: storage %T", st)
	}
	f, ok := reflect.TypeOf(caddy.Context{}).FieldByName("cfg")
	if !ok || f.Type.Kind() != reflect.Pointer {
		t.Fatalf("caddy.Context has no cfg pointer field (%v, %v): configStorage must find another way to tell a loaded config", ok, f.Type)
	}
}
