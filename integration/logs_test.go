package integration

// Logs (S38): a representative run of the suite with Caddy's debug
// logging on and access logs written, every line the process prints
// captured, and searched for the secrets, the signing key, every cookie
// value (any 16-character piece of one), every session ID (any 16-character
// piece) and every session value (distinctive canaries). Session IDs may
// appear only as their short keyed hash.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/caddy-session/caddy-session/cookie"
	"github.com/caddy-session/caddy-session/storage"
)

// Canaries: none of these may appear in a log line.
const (
	logSecretOld = "canarySECRETold-0123456789abcdefghijklmnop"
	logSecretNew = "canarySECRETnew-0123456789abcdefghijklmnop"
	logSignKey   = "canarySIGNKEY-0123456789abcdefghijklmnopqr"
)

// logValues are session values, each distinctive.
var logValues = []string{
	"canaryVALtheme0001", "canaryVALcust00002", "canaryVALcart00003", "canaryVALhydro0004",
	"canaryVALbad000005", "canaryVALrefused06", "canaryVALbig000007", "canaryVALrotate008",
	"canaryVALapi000009", "canaryVALnew000010",
}

// logKeys are the keys the scenario writes, for the log filter.
var logKeys = []string{"theme", "customerId", "cart", "note", "big", "after", "shown"}

// logRun records what a scenario handed out.
type logRun struct {
	t       *testing.T
	c       *Caddy
	cookies map[string]bool // every cookie value seen in a Set-Cookie
	ids     map[string]bool // every session ID those cookies hold
	keys    map[string]bool // store keys of those IDs
	refs    map[string]bool // their keyed hashes
}

func newLogRun(t *testing.T, c *Caddy) *logRun {
	return &logRun{t: t, c: c, cookies: map[string]bool{}, ids: map[string]bool{}, keys: map[string]bool{}, refs: map[string]bool{}}
}

// note records the cookies of a response and the IDs they carry.
func (l *logRun) note(r *Resp) *Resp {
	l.t.Helper()
	jar := NewJar()
	for _, line := range r.SetCookies() {
		ck := parseSetCookie(l.t, line)
		if ck.Value != "" {
			l.cookies[ck.Value] = true
		}
	}
	jar.Update(l.t, r)
	l.noteJar(jar)
	return r
}

// noteJar decodes the session cookie a jar holds.
func (l *logRun) noteJar(jar *Jar) {
	l.t.Helper()
	for _, n := range jar.Names() {
		if v := jar.Get(n); v != "" {
			l.cookies[v] = true
		}
	}
	value, _ := cookie.Options{}.Read(http.Header{"Cookie": {jar.Header()}}, 8)
	if value == "" {
		return
	}
	codec, err := cookie.NewCodec([][]byte{[]byte(logSecretNew), []byte(logSecretOld)})
	if err != nil {
		l.t.Fatal(err)
	}
	var id string
	if _, err := codec.Decode("__session", "127.0.0.1", value, &id); err != nil || !cookie.ValidID(id) {
		var p struct {
			ID string `json:"i"`
		}
		if _, err := codec.Decode("__session", "127.0.0.1", value, &p); err != nil {
			return // a cookie this run forged
		}
		id = p.ID
	}
	if cookie.ValidID(id) {
		l.ids[id] = true
		l.keys[storage.Key(id)] = true
		l.refs[codec.Ref(id)] = true
		old, _ := cookie.NewCodec([][]byte{[]byte(logSecretOld)})
		l.refs[old.Ref(id)] = true // refs computed before the rotation to the new secret
	}
}

func (l *logRun) do(b *Browser, q Req) *Resp {
	l.t.Helper()
	r := l.note(b.Do(l.t, q))
	l.noteJar(b.Jar)
	return r
}

// logScenario drives a representative part of the suite: API writes,
// reads and deletes, upstream Set/Rotate/Destroy, spoofed headers, a
// tampered and a forged cookie, a malformed and a refused upstream write,
// a Hydrogen 1.0 import, an oversize value, a secret rotation, and the
// store failing.
func logScenario(t *testing.T, o CaddyOpts, breakStore func()) (*logRun, string) {
	o.Session = "\tsecret " + logSecretOld + "\n" + o.Session
	c := StartCaddy(t, o)
	l := newLogRun(t, c)
	b := c.NewBrowser()
	// What the client sends is not session data: spoofed headers carry
	// "spoofVAL", which the checks ignore.
	spoof := []string{"X-Session-Customerid: spoofVALwrong", "X_Session_Theme: spoofVALwrong"}
	// The upstream's writes, set by the upstream itself (a test header
	// asking the echo upstream for them would put the values in the
	// request, where Caddy logs them as the client's).
	for path, h := range map[string][][2]string{
		"/login":  {{"X-Session-Set", `{"customerId":"canaryVALcust00002","cart":{"items":["canaryVALcart00003"]}}`}},
		"/bad":    {{"X-Session-Set", `{"theme":"canaryVALbad000005",}`}},
		"/bad2":   {{"X-Session-Set", `{"1bad":"canaryVALrefused06"}`}},
		"/rotate": {{"X-Session-Rotate", "1"}, {"X-Session-Set", `{"after":"canaryVALrotate008"}`}},
		"/big":    {{"X-Session-Set", `{"big":"canaryVALbig000007` + strings.Repeat("b", 9000) + `"}`}},
		"/logout": {{"X-Session-Destroy", "1"}},
	} {
		c.Up.Handle(path, func(_ *Recorded, hdr http.Header) int {
			for _, kv := range h {
				hdr.Add(kv[0], kv[1])
			}
			return 0
		})
	}

	l.do(b, Req{Method: "POST", Path: "/__session", CT: "application/json", Body: `{"theme":"canaryVALtheme0001"}`, Header: spoof})
	l.do(b, Req{Path: "/login", Header: spoof})
	l.do(b, Req{Path: "/page", Header: spoof})
	l.do(b, Req{Path: "/__session"})
	l.do(b, Req{Method: "PATCH", Path: "/__session", CT: "application/json", Body: `{"note":"canaryVALapi000009"}`})
	l.do(b, Req{Method: "POST", Path: "/__session", CT: "application/json", Body: `{"customerId":"spoofVALwrong"}`}) // 403
	l.do(b, Req{Path: "/bad"})
	l.do(b, Req{Path: "/bad2"})
	l.do(b, Req{Path: "/rotate"})
	l.do(b, Req{Path: "/page"})
	l.do(b, Req{Path: "/big"})
	l.do(b, Req{Path: "/page"})

	// A tampered cookie and a well-formed forgery.
	v := b.Jar.Get("__session")
	l.do(c.NewBrowser(), Req{Path: "/page", Cookie: "__session=" + v[:len(v)/2] + "A" + v[len(v)/2+1:]})
	l.do(c.NewBrowser(), Req{Path: "/page", Cookie: "__session=" + strings.Repeat("QUJD", 40)})
	// A Hydrogen 1.0 cookie (plain JSON) to import.
	hydro := url.QueryEscape(`{"theme":"canaryVALhydro0004","customerId":"spoofVALwrong"}`)
	l.do(c.NewBrowser(), Req{Path: "/page", Cookie: "hydrogenSession=" + hydro})

	// Rotate the secret: the old cookies are re-issued under the new one.
	o2 := o
	o2.Session = strings.Replace(o.Session, "secret "+logSecretOld, "secret "+logSecretNew+" "+logSecretOld, 1)
	c.Reload(t, o2)
	l.do(b, Req{Path: "/page"})
	l.do(b, Req{Path: "/__session"})

	// The store fails (server stores): errors are logged.
	if breakStore != nil {
		breakStore()
		l.do(b, Req{Path: "/page", Header: spoof})
		l.do(b, Req{Method: "POST", Path: "/__session", CT: "application/json", Body: `{"theme":"canaryVALnew000010"}`})
		l.do(b, Req{Path: "/__session"})
	}
	nb := c.NewBrowser()
	l.do(nb, Req{Method: "POST", Path: "/__session", CT: "application/json", Body: `{"theme":"canaryVALnew000010"}`})
	l.do(nb, Req{Path: "/logout"})
	l.do(b, Req{Method: "DELETE", Path: "/__session"})
	l.do(b, Req{Path: "/after-delete"})
	return l, c.FinalLogs()
}

// logSession is the session block of the log runs.
const logSession = "\tclient_writable theme note\n\tclient_readable *\n\tsign_headers " + logSignKey + "\n\tmigrate_from hydrogen_v1 hydrogenSession"

// logGlobal turns on debug logging; filter adds the operator's log filter
// (SECURITY.md) that deletes the X-Session-* headers from Caddy's request
// and response dumps.
func logGlobal(filter bool) string {
	if !filter {
		return "\tdebug"
	}
	return "\tdebug\n\tlog {\n\t\tlevel DEBUG\n\t\tformat " + logFilter("\t\t") + "\n\t}"
}

// logFilter is a filter encoder deleting the forwarded and control
// X-Session-* headers wherever Caddy dumps headers.
func logFilter(indent string) string {
	var b strings.Builder
	b.WriteString("filter {\n" + indent + "\twrap json\n" + indent + "\tfields {\n")
	names := []string{"Set", "Rotate", "Destroy"}
	for _, k := range logKeys {
		names = append(names, strings.TrimPrefix(http.CanonicalHeaderKey(storage.HeaderName(k)), "X-Session-"))
	}
	for _, n := range names {
		for _, f := range []string{"request>headers>X-Session-", "headers>X-Session-", "resp_headers>X-Session-"} {
			fmt.Fprintf(&b, "%s\t\t%s%s delete\n", indent, f, n)
		}
	}
	b.WriteString(indent + "\t}\n" + indent + "}")
	return b.String()
}

// logSite is the default site with an access log (with the filter when
// asked).
func logSite(filter bool) string {
	if !filter {
		return "log\n" + defaultSite
	}
	return "log {\n\tformat " + logFilter("\t") + "\n}\n" + defaultSite
}

// checkLogs searches every line. With exempt, a session value may appear
// only inside Caddy's dumps of X-Session-* headers (reverse_proxy's debug
// "upstream roundtrip" and the access log print the proxied request's
// headers, and those headers are the session, by design); it returns how
// many lines needed that exemption.
func checkLogs(t *testing.T, l *logRun, logs string, exempt bool) int {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	if len(lines) < 50 {
		t.Fatalf("only %d log lines: is debug logging on?", len(lines))
	}
	var moduleLines int
	for _, line := range lines {
		if strings.Contains(line, `"logger":"http.handlers.session"`) {
			moduleLines++
		}
	}
	if moduleLines == 0 {
		t.Fatalf("no line from the session module at debug level")
	}

	// Every 16-character piece of every cookie value and session ID.
	pieces := map[string]string{}
	addPieces := func(what, s string) {
		for i := 0; i+16 <= len(s); i++ {
			pieces[s[i:i+16]] = what
		}
	}
	for v := range l.cookies {
		addPieces("a cookie value", v)
	}
	for id := range l.ids {
		addPieces("a session ID", id)
	}
	// Store keys (hashes of IDs) may appear: a file store's error names
	// the session's file. They are what a store dump holds, and yield no
	// cookie (S32).
	if len(l.ids) < 3 {
		t.Fatalf("harness: only %d session IDs seen; the scenario did not run", len(l.ids))
	}
	whole := []string{logSecretOld, logSecretNew, logSignKey, "canarySECRET", "canarySIGNKEY"}
	refRe := regexp.MustCompile(`"(session|from)":"([^"]*)"`)

	exempted := 0
	for n, line := range lines {
		for _, s := range whole {
			if strings.Contains(line, s) {
				t.Errorf("line %d carries a secret (%.12s…): %.300s", n+1, s, line)
			}
		}
		for i := 0; i+16 <= len(line); i++ {
			if what, ok := pieces[line[i:i+16]]; ok {
				t.Errorf("line %d carries a piece of %s: %.300s", n+1, what, line)
				break
			}
		}
		// Session references are the short keyed hash of a known ID.
		if strings.Contains(line, `"logger":"http.handlers.session"`) {
			for _, m := range refRe.FindAllStringSubmatch(line, -1) {
				if m[2] != "" && !l.refs[m[2]] {
					t.Errorf("line %d names a session by %q, not by the keyed hash of its ID: %.300s", n+1, m[2], line)
				}
			}
		}
		// Session values.
		checked := line
		if exempt && strings.Contains(line, "canaryVAL") {
			var obj map[string]any
			if json.Unmarshal([]byte(line), &obj) == nil {
				if dropSessionHeaderDumps(obj) {
					exempted++
				}
				b, _ := json.Marshal(obj)
				checked = string(b)
			}
		}
		if strings.Contains(checked, "canaryVAL") {
			t.Errorf("line %d carries a session value: %.400s", n+1, line)
		}
	}
	return exempted
}

// dropSessionHeaderDumps removes X-Session-* entries from every "headers"
// or "resp_headers" object in a log entry, and reports whether it removed
// any.
func dropSessionHeaderDumps(v any) bool {
	dropped := false
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if k == "headers" || k == "resp_headers" {
				if h, ok := val.(map[string]any); ok {
					for name := range h {
						if sessionName(name) {
							delete(h, name)
							dropped = true
						}
					}
				}
			}
			dropped = dropSessionHeaderDumps(val) || dropped
		}
	case []any:
		for _, e := range x {
			dropped = dropSessionHeaderDumps(e) || dropped
		}
	}
	return dropped
}

// logStores are the stores of the log runs and how each is broken.
func logStores(t *testing.T) map[string]func() (string, func()) {
	return map[string]func() (string, func()){
		"cookie": func() (string, func()) { return "", nil },
		"memory": func() (string, func()) {
			return "\n\tstore memory {\n\t\tname logs-" + fmt.Sprint(freePort(t)) + "\n\t}", nil
		},
		"file": func() (string, func()) {
			dir := filepath.Join(t.TempDir(), "sessions")
			return "\n\tstore file " + dir, func() {
				_ = os.RemoveAll(dir)
				_ = os.WriteFile(dir, []byte("not a directory"), 0o600)
			}
		},
		"redis": func() (string, func()) {
			if _, err := exec.LookPath("redis-server"); err != nil && os.Getenv("CI") == "" {
				return "skip", nil
			}
			rs := startRedis(t, "--protected-mode", "no")
			return "\n\tstore redis redis://" + rs.Addr() + "/0", rs.Kill
		},
	}
}

// TestLogsNoSecrets: with debug logging and access logs as Caddy writes
// them by default, no line carries a secret, the signing key, a cookie
// value or a session ID (or a 16-character piece of one), and the module's
// own lines name sessions only by their keyed hash. Session values appear
// only where Caddy itself dumps the proxied request's and the upstream's
// X-Session-* headers (reverse_proxy's debug "upstream roundtrip" line,
// the access log): SECURITY.md documents that limit and the log filter
// that removes them, which TestLogsNoSessionValuesWithFilter proves.
func TestLogsNoSecrets(t *testing.T) {
	t.Parallel()
	for name, store := range logStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg, breakStore := store()
			if cfg == "skip" {
				t.Skip("redis-server is not installed")
			}
			l, logs := logScenario(t, CaddyOpts{Global: logGlobal(false), Site: logSite(false), Session: logSession + cfg}, breakStore)
			n := checkLogs(t, l, logs, true)
			if testing.Verbose() {
				t.Logf("%d access log lines, %d module lines", strings.Count(logs, `"logger":"http.log.access`), strings.Count(logs, `"logger":"http.handlers.session"`))
				for _, line := range strings.Split(logs, "\n") {
					if strings.Contains(line, "canaryVAL") {
						var e struct{ Logger, Msg string }
						_ = json.Unmarshal([]byte(line), &e)
						t.Logf("values inside header dumps: logger %q msg %q", e.Logger, e.Msg)
					}
				}
			}
			t.Logf("%d log lines; %d of them carry session values only inside Caddy's X-Session-* header dumps", strings.Count(logs, "\n"), n)
			if t.Failed() {
				keys := make([]string, 0, len(l.refs))
				for k := range l.refs {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				t.Logf("known refs: %v", keys)
			}
		})
	}
}

// TestLogsNoSessionValuesWithFilter: with the log filter SECURITY.md gives
// operators who turn debug logging on, no line carries anything of the
// above, session values included, without exception.
func TestLogsNoSessionValuesWithFilter(t *testing.T) {
	t.Parallel()
	for name, store := range logStores(t) {
		if name != "cookie" && name != "file" {
			continue // the filter concerns Caddy's dumps, not the store
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg, breakStore := store()
			l, logs := logScenario(t, CaddyOpts{Global: logGlobal(true), Site: logSite(true), Session: logSession + cfg}, breakStore)
			checkLogs(t, l, logs, false)
		})
	}
}
