package caddymodule

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

const (
	goodSecretA = "0123456789abcdef0123456789abcdef"
	goodSecretB = "fedcba9876543210fedcba9876543210"
)

// unmarshalSession runs the session directive's parser on src.
func unmarshalSession(src string) (*Handler, error) {
	h := new(Handler)
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src))
	return h, err
}

// TestConfigCaddyfileLoadErrors: what the Caddyfile itself holds fails
// while it is read, at its line (#16), with a message that says what to
// do and never shows a secret.
func TestConfigCaddyfileLoadErrors(t *testing.T) {
	short := "tooShortXYZ123"
	for _, tc := range []struct {
		name, body string
		line       int
		want       []string
		hidden     []string
	}{
		{"short secret", "secret " + short, 2, []string{"secret #1", "14 bytes", "at least 32", "caddy session secret"}, []string{short}},
		{"short second secret", "secret " + goodSecretA + " " + short, 2, []string{"secret #2", "caddy session secret"}, []string{short, goodSecretA}},
		{"short secret on a later line", "secret " + goodSecretA + "\n\tsecret " + short, 3, []string{"secret #2"}, []string{short, goodSecretA}},
		{"repeated secret", "secret " + goodSecretA + " " + goodSecretB + " " + goodSecretA, 2, []string{"secret #3 repeats secret #1", "caddy session secret"}, []string{goodSecretA, goodSecretB}},
		{"repeated secret across lines", "secret " + goodSecretA + "\n\tsecret " + goodSecretB + "\n\tsecret " + goodSecretA, 4, []string{"secret #3 repeats secret #1"}, []string{goodSecretA}},
		{"repeated placeholder secret", "secret {env.S}\n\tsecret {env.S}", 3, []string{"secret #2 repeats secret #1"}, nil},
		{"bad client_writable key", "client_writable theme 1cart", 2, []string{`client_writable: invalid key "1cart"`, "a letter first"}, nil},
		{"bad client_readable key", "client_readable the.me", 2, []string{`client_readable: invalid key "the.me"`}, nil},
		{"star with keys", "client_readable * theme", 2, []string{"client_readable: * stands for every key"}, nil},
		{"star after keys", "client_readable theme\n\tclient_readable *", 3, []string{"* stands for every key"}, nil},
		{"bad forward key", "forward customer-id! theme", 2, []string{`forward: invalid key "customer-id!"`}, nil},
		{"bad index_key", "index_key customer.id", 2, []string{`index_key: invalid key "customer.id"`}, nil},
		{"same header", "forward cart_id cart-id", 2, []string{`keys "cart_id" and "cart-id" name the same header (X-Session-Cart-Id)`}, nil},
		{"same header across lines", "client_writable cartId\n\tclient_writable cartid", 3, []string{`"cartId" and "cartid" name the same header`}, nil},
		{"key listed twice", "client_writable theme\n\tclient_writable cart theme", 3, []string{`client_writable: key "theme" listed twice`}, nil},
		{"origin listed twice", "trusted_origins https://a.example\n\ttrusted_origins https://A.example", 3, []string{`origin "https://A.example" listed twice`}, nil},
		{"redis url scheme", "store redis http://pw@r:6379", 2, []string{`scheme "http" is not Redis's`, "redis://", "rediss://"}, []string{"pw@"}},
		{"redis url subdirective scheme", "store redis {\n\t\turl https://r:6379\n\t}", 3, []string{`scheme "https"`}, nil},
		{"redis url no scheme", "store redis r:6379", 2, []string{"redis url: write it as redis://"}, nil},
		{"redis url scheme, placeholder password", "store redis http://:{env.PW}@r:6379", 2, []string{`scheme "http"`}, nil},
		{"expires past", "cookie {\n\t\texpires 2020-01-02T15:04:05Z\n\t}", 3, []string{"cookie expires 2020-01-02T15:04:05Z has passed", "set a time in the future"}, nil},
		{"unknown store", "store redi", 2, []string{`unknown store "redi"`, "did you mean redis?", "cookie, file, memory", "redis"}, nil},
		{"unknown store far", "store nowhere", 2, []string{`unknown store "nowhere"`, "http.session.stores.nowhere", "this binary has the stores"}, nil},
		{"previous_store into the cookie store", "previous_store memory", 2, []string{"previous_store moves sessions into a server store", "store is cookie", "add store memory"}, nil},
		{"previous_store into store cookie", "store cookie\n\tprevious_store memory {\n\t\tname old\n\t}", 3, []string{"store is cookie"}, nil},
		{"previous_store same as store", "previous_store memory\n\tstore memory", 2, []string{"previous_store is the same as store"}, nil},
		{"previous_store unknown", "store memory\n\tprevious_store memry", 3, []string{`unknown store "memry"`, "did you mean memory?"}, nil},
		{"max_age zero seconds", "cookie {\n\t\tmax_age 0\n\t}", 3, []string{`max_age "0"`, "seconds"}, nil},
		{"max_age bad", "cookie {\n\t\tmax_age forever\n\t}", 3, []string{`max_age "forever"`, "duration"}, nil},
		{"same_site bad", "cookie {\n\t\tsame_site Sometimes\n\t}", 3, []string{`same_site "Sometimes"`}, nil},
		{"http_only bad", "cookie {\n\t\thttp_only yes\n\t}", 3, []string{`http_only "yes"`}, nil},
		{"partitioned secure off", "cookie {\n\t\tpartitioned\n\t\tsecure off\n\t}", 4, []string{"Partitioned cookie without Secure", "remove partitioned"}, nil},
		{"secure off partitioned", "cookie {\n\t\tsecure false\n\t\tpartitioned on\n\t}", 4, []string{"Partitioned cookie without Secure"}, nil},
		{"partitioned bad", "cookie {\n\t\tpartitioned maybe\n\t}", 3, []string{`partitioned "maybe"`}, nil},
		{"priority bad", "cookie {\n\t\tpriority urgent\n\t}", 3, []string{`priority "urgent"`, "low, medium or high"}, nil},
		{"priority missing", "cookie {\n\t\tpriority\n\t}", 3, []string{"argument"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := unmarshalSession("session {\n\t" + tc.body + "\n}")
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			t.Log(msg)
			if want := "Testfile:" + strconv.Itoa(tc.line); !strings.Contains(msg, want) {
				t.Errorf("error %q does not name line %d", msg, tc.line)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			for _, h := range tc.hidden {
				if strings.Contains(msg, h) {
					t.Errorf("error %q shows %q", msg, h)
				}
			}
		})
	}
}

// TestConfigCaddyfileAccepted: what #16 makes valid parses to the JSON
// the handler reads: list lines add up, Hydrogen's spellings map to ours,
// placeholders are left for provisioning.
func TestConfigCaddyfileAccepted(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"secrets add up", "secret " + goodSecretA + "\n\tsecret " + goodSecretB + " {env.OLD}",
			`"secrets":["` + goodSecretA + `","` + goodSecretB + `","{env.OLD}"]`},
		{"short placeholder secret left to provisioning", "secret {env.S}", `"secrets":["{env.S}"]`},
		{"client_writable adds up", "client_writable theme\n\tclient_writable cart countryCode", `"client_writable":["theme","cart","countryCode"]`},
		{"client_readable adds up", "client_readable a\n\tclient_readable b", `"client_readable":["a","b"]`},
		{"client_readable star", "client_readable *", `"client_readable":["*"]`},
		{"forward adds up", "forward a b\n\tforward c", `"forward":["a","b","c"]`},
		{"trusted_origins add up", "trusted_origins https://a.example\n\ttrusted_origins https://b.example", `"trusted_origins":["https://a.example","https://b.example"]`},
		{"index_key", "index_key customerId", `"index_key":"customerId"`},
		{"same_site Lax", "cookie {\n\t\tsame_site Lax\n\t}", `"cookie":{"same_site":"lax"}`},
		{"same_site STRICT", "cookie {\n\t\tsame_site STRICT\n\t}", `"cookie":{"same_site":"strict"}`},
		{"secure true", "cookie {\n\t\tsecure true\n\t}", `"cookie":{"secure":"on"}`},
		{"secure false", "cookie {\n\t\tsecure false\n\t}", `"cookie":{"secure":"off"}`},
		{"secure On", "cookie {\n\t\tsecure On\n\t}", `"cookie":{"secure":"on"}`},
		{"http_only false", "cookie {\n\t\thttp_only false\n\t}", `"cookie":{"http_only":false}`},
		{"partitioned", "cookie {\n\t\tpartitioned\n\t}", `"cookie":{"partitioned":true}`},
		{"partitioned off", "cookie {\n\t\tpartitioned off\n\t}", `"cookie":{}`},
		{"partitioned secure on", "cookie {\n\t\tpartitioned true\n\t\tsecure on\n\t}", `"cookie":{"secure":"on","partitioned":true}`},
		{"priority High", "cookie {\n\t\tpriority High\n\t}", `"cookie":{"priority":"high"}`},
		{"priority low", "cookie {\n\t\tpriority low\n\t}", `"cookie":{"priority":"low"}`},
		{"http_only true", "cookie {\n\t\thttp_only true\n\t}", `"cookie":{"http_only":true}`},
		{"http_only TRUE", "cookie {\n\t\thttp_only TRUE\n\t}", `"cookie":{"http_only":true}`},
		{"max_age seconds", "cookie {\n\t\tmax_age 2592000\n\t}", `"cookie":{"max_age":2592000000000000}`},
		{"max_age duration", "cookie {\n\t\tmax_age 30d\n\t}", `"cookie":{"max_age":2592000000000000}`},
		{"expires future", "cookie {\n\t\texpires 2099-01-02T15:04:05Z\n\t}", `"cookie":{"expires":"2099-01-02T15:04:05Z"}`},
		{"redis url", "store redis redis://r:6379/0", `"url":"redis://r:6379/0"`},
		{"rediss url", "store redis {\n\t\turl rediss://r:6379/0\n\t}", `"url":"rediss://r:6379/0"`},
		{"redis url placeholder", "store redis {env.REDIS_URL}", `"url":"{env.REDIS_URL}"`},
		{"redis url placeholder password", "store redis redis://:{env.PW}@r:6379/0", `"url":"redis://:{env.PW}@r:6379/0"`},
		{"unix socket url", "store redis unix:///run/redis.sock", `"url":"unix:///run/redis.sock"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := unmarshalSession("session {\n\t" + tc.body + "\n}")
			if err != nil {
				t.Fatal(err)
			}
			out, _ := json.Marshal(h)
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("JSON %s does not contain %s", out, tc.want)
			}
		})
	}
}

// TestConfigExpiresPastAtProvision: a JSON config, which no Caddyfile
// check sees, fails at provisioning with a cookie expires that has passed
// (it used to load and give every session Max-Age=1).
func TestConfigExpiresPastAtProvision(t *testing.T) {
	h := &Handler{Secrets: []string{goodSecretA}, Cookie: &CookieConfig{Expires: "2020-01-02T15:04:05Z"}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	err := h.Provision(ctx)
	if err == nil || !strings.Contains(err.Error(), "has passed") {
		t.Fatalf("want a load error for a past expires, got %v", err)
	}
	if _, err := checkExpires(time.Now().Add(time.Hour).UTC().Format(time.RFC3339), time.Now()); err != nil {
		t.Errorf("a future expires: %v", err)
	}
}

func TestOrdinal(t *testing.T) {
	for n, want := range map[int]string{1: "1st", 2: "2nd", 3: "3rd", 4: "4th", 11: "11th", 12: "12th", 13: "13th", 21: "21st", 22: "22nd", 111: "111th"} {
		if got := ordinal(n); got != want {
			t.Errorf("ordinal(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestConfigPartitionedAtProvision: a JSON config with partitioned and
// secure off fails to load, as the Caddyfile does at adapt time; an
// unknown priority too.
func TestConfigPartitionedAtProvision(t *testing.T) {
	for _, c := range []*CookieConfig{
		{Partitioned: true, Secure: "off"},
		{Priority: "urgent"},
	} {
		h := &Handler{Secrets: []string{goodSecretA}, Cookie: c}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
		err := h.Provision(ctx)
		cancel()
		if err == nil || !(strings.Contains(err.Error(), "Partitioned") || strings.Contains(err.Error(), "priority")) {
			t.Errorf("%+v: want a load error, got %v", c, err)
		}
	}
}

// TestMaxAgeLimitCaddyfile: max_age_limit takes a duration or seconds,
// and a limit below the cookie's max_age fails at the line of whichever
// of the two comes second.
func TestMaxAgeLimitCaddyfile(t *testing.T) {
	h, err := unmarshalSession("session {\n\tmax_age_limit 365d\n}")
	if err != nil || time.Duration(h.MaxAgeLimit) != 365*24*time.Hour {
		t.Fatalf("max_age_limit 365d: %v, %v", h, err)
	}
	h, err = unmarshalSession("session {\n\tmax_age_limit 31536000\n}")
	if err != nil || time.Duration(h.MaxAgeLimit) != 365*24*time.Hour {
		t.Fatalf("max_age_limit 31536000: %v, %v", h, err)
	}
	out, _ := json.Marshal(h)
	if !strings.Contains(string(out), `"max_age_limit":31536000000000000`) {
		t.Errorf("JSON %s", out)
	}
	for _, tc := range []struct {
		body string
		line int
		want string
	}{
		{"max_age_limit 7d\n\tcookie {\n\t\tmax_age 30d\n\t}", 5, "below the cookie's max_age"},
		{"cookie {\n\t\tmax_age 30d\n\t}\n\tmax_age_limit 7d", 5, "below the cookie's max_age"},
		{"max_age_limit 0", 2, `max_age_limit "0"`},
		{"max_age_limit forever", 2, `max_age_limit "forever"`},
		{"max_age_limit", 2, "argument"},
	} {
		_, err := unmarshalSession("session {\n\t" + tc.body + "\n}")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "Testfile:"+strconv.Itoa(tc.line)) {
			t.Errorf("%q: %v, want line %d and %q", tc.body, err, tc.line, tc.want)
		}
	}
}
