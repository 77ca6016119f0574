package caddymodule

import (
	"encoding/json"
	"testing"
)

// adaptRedisStore adapts a session whose store block is body and returns
// the store's JSON.
func adaptRedisStore(t *testing.T, body string) (string, error) {
	t.Helper()
	out, err := adapt(t, ":8080 {\n\tsession {\n\t\tstore redis {\n\t\t\t"+body+"\n\t\t}\n\t}\n}\n")
	if err != nil {
		return "", err
	}
	store, _ := json.Marshal(sessionHandler(t, out)["store"])
	return string(store), nil
}

func TestCaddyfileAdaptRedisLocalCache(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"default", "url redis://127.0.0.1:6379/0",
			`{"backend":"redis","url":"redis://127.0.0.1:6379/0"}`},
		{"off", "url redis://127.0.0.1:6379/0\n\t\t\tlocal_cache off",
			`{"backend":"redis","local_cache":-1,"url":"redis://127.0.0.1:6379/0"}`},
		{"sized", "addresses 10.0.0.1:6379\n\t\t\tlocal_cache 50000\n\t\t\tpool_size 20",
			`{"addresses":["10.0.0.1:6379"],"backend":"redis","local_cache":50000,"pool_size":20}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := adaptRedisStore(t, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("store JSON:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestCaddyfileRedisLocalCacheErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"no argument", "local_cache", "wrong argument count"},
		{"two arguments", "local_cache 10 20", "wrong argument count"},
		{"zero", "local_cache 0", `local_cache "0": want off or a number of sessions, at least 1`},
		{"negative", "local_cache -1", `local_cache "-1"`},
		{"word", "local_cache on", `local_cache "on"`},
		{"duplicate", "local_cache off\n\t\t\tlocal_cache 10", `duplicate subdirective "local_cache"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := adaptRedisStore(t, "url redis://127.0.0.1:6379/0\n\t\t\t"+tc.body)
			wantLineError(t, err, tc.want)
		})
	}
}
