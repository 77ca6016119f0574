package integration

import (
	"bufio"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddy-session/caddy-session/internal/testkit"
)

// docSnippet is one fenced Caddyfile block of the documentation.
type docSnippet struct {
	file  string // relative to the module root
	line  int    // of the opening fence
	kind  string // "" (a config), "syntax" or "plugin"
	text  string // with the Markdown indentation removed; ends with "\n"
	label string // file:line
}

// docFence opens a fenced Caddyfile block: "```caddyfile", possibly indented
// (a block in a list item), possibly with one more word after the language.
var docFence = regexp.MustCompile("^([ \t]*)```caddyfile(?:[ \t]+(\\S+))?[ \t]*$")

// docSnippets returns the fenced Caddyfile blocks of the Markdown file path.
func docSnippets(t *testing.T, root, rel string) []docSnippet {
	t.Helper()
	f, err := os.Open(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		snippets []docSnippet
		cur      *docSnippet
		indent   string
		body     strings.Builder
		n        int
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n++
		line := sc.Text()
		if cur == nil {
			if m := docFence.FindStringSubmatch(line); m != nil {
				cur = &docSnippet{file: rel, line: n, kind: m[2], label: fmt.Sprintf("%s:%d", rel, n)}
				indent = m[1]
				body.Reset()
			} else if strings.HasPrefix(strings.TrimSpace(line), "```caddyfile") {
				t.Errorf("%s:%d: a Caddyfile fence this test does not understand: %q", rel, n, line)
			}
			continue
		}
		if strings.TrimSpace(line) == "```" {
			cur.text = body.String()
			snippets = append(snippets, *cur)
			cur = nil
			continue
		}
		if strings.TrimSpace(line) != "" && !strings.HasPrefix(line, indent) {
			t.Errorf("%s:%d: line less indented than its fence: %q", rel, n, line)
		}
		body.WriteString(strings.TrimPrefix(line, indent))
		body.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur != nil {
		t.Errorf("%s: the Caddyfile block at line %d is not closed", rel, cur.line)
	}
	return snippets
}

// sessionSubdirectives are the words that open a line of a session block:
// a fragment that starts with one of them is wrapped in `session { }`.
var sessionSubdirectives = map[string]bool{
	"secret": true, "cookie": true, "store": true, "idle_timeout": true,
	"api_path": true, "client_writable": true, "client_readable": true,
	"trusted_origins": true, "forward": true, "max_body": true,
	"max_size": true, "max_keys": true, "on_store_error": true,
	"vary_cookie": true, "sign_headers": true, "migrate_from": true,
	"index_key": true, "admin_id": true, "audience": true,
	"new_session_ttl": true,
}

// indentBlock prefixes every non-empty line of s with a tab.
func indentBlock(s string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != "" {
			lines[i] = "\t" + l
		}
	}
	return strings.Join(lines, "")
}

// wrapSnippet returns the whole Caddyfile that a snippet stands for (see
// TestDocsCaddyfileSnippets), and how it was wrapped.
func wrapSnippet(s string) (caddyfile, how string) {
	first := ""
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			first = strings.Fields(l)[0]
			break
		}
	}
	site := func(body string) string {
		return ":8080 {\n" + indentBlock(body) + "\trespond ok\n}\n"
	}
	switch {
	case first == "{" || strings.ContainsAny(first, ".:"):
		return s, "as is"
	case sessionSubdirectives[first]:
		return site("session {\n" + indentBlock(s) + "}\n"), "in session { } in a site"
	default:
		return site(s), "in a site"
	}
}

// TestDocsCaddyfileSnippets runs every fenced Caddyfile block of README.md
// and docs/*.md through the Caddy the tests build, so that the examples work
// as written. The rule, by the block's info string:
//
//   - ```caddyfile: `caddy fmt` must leave it unchanged (tabs for
//     indentation, one space between words: no columns aligned with
//     spaces, comments included) and `caddy adapt --adapter caddyfile` must
//     accept it. A block is adapted as written when it starts with a global
//     options block or a site address (a first word that is "{" or has a
//     "." or ":"); a fragment starting with a session subdirective (store,
//     cookie, client_writable…) is put in `session { }` in a site
//     (`:8080 { … respond ok }`); any other fragment (`session { }`, a
//     `handle`) is put in that site.
//   - ```caddyfile syntax: a syntax summary (<placeholders>, a|b
//     alternatives), checked with `caddy fmt` only.
//   - ```caddyfile plugin: a recipe that needs a plugin this repository's
//     Caddy does not include (rate_limit), checked with `caddy fmt` only.
//
// The second word keeps the language first, so renderers still highlight
// the block as a Caddyfile. Any other word fails the test. Placeholders such
// as {env.SESSION_SECRET} get values in adapt's environment; adapt leaves
// most of them to be resolved when the config loads.
func TestDocsCaddyfileSnippets(t *testing.T) {
	t.Parallel()
	root, err := testkit.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"README.md"}
	for _, d := range docs {
		rel, _ := filepath.Rel(root, d)
		files = append(files, rel)
	}
	var snippets []docSnippet
	for _, f := range files {
		snippets = append(snippets, docSnippets(t, root, f)...)
	}
	if len(snippets) < 10 {
		t.Fatalf("found %d Caddyfile blocks in %v; the extraction is broken", len(snippets), files)
	}
	env := []string{
		"SESSION_SECRET=" + strings.Repeat("s", 48),
		"SESSION_SIGN_KEY=" + strings.Repeat("k", 48),
		"REDIS_URL=redis://127.0.0.1:6379/0",
		"REDIS_ADDR=127.0.0.1:6379",
		"REDIS_PASSWORD=password",
	}
	dir := t.TempDir()
	for i, s := range snippets {
		t.Run(strings.NewReplacer("/", "_", ":", "_").Replace(s.label), func(t *testing.T) {
			switch s.kind {
			case "", "syntax", "plugin":
			default:
				t.Fatalf("%s: unknown info string \"caddyfile %s\" (want caddyfile, caddyfile syntax or caddyfile plugin)", s.label, s.kind)
			}
			src := filepath.Join(dir, fmt.Sprintf("snippet%d.caddyfile", i))
			if err := os.WriteFile(src, []byte(s.text), 0o644); err != nil {
				t.Fatal(err)
			}
			out, _, err := testkit.RunCaddy(caddyBin, dir, env, time.Minute, "fmt", src)
			if out != s.text {
				t.Errorf("%s: `caddy fmt` changes the block (%v); write it as:\n%s", s.label, err, out)
			}
			if s.kind != "" {
				return
			}
			full, how := wrapSnippet(s.text)
			cfg := filepath.Join(dir, fmt.Sprintf("snippet%d-full.caddyfile", i))
			if err := os.WriteFile(cfg, []byte(full), 0o644); err != nil {
				t.Fatal(err)
			}
			_, errOut, err := testkit.RunCaddy(caddyBin, dir, env, time.Minute, "adapt", "--config", cfg, "--adapter", "caddyfile")
			if err != nil {
				t.Errorf("%s: `caddy adapt` of the block (%s) fails: %v\n%s\nthe Caddyfile:\n%s", s.label, how, err, errOut, full)
			} else if strings.Contains(errOut, "not formatted") {
				t.Errorf("%s: the block wrapped %s is not formatted:\n%s\n%s", s.label, how, errOut, full)
			}
		})
	}
}

// TestDocsHydrogenMigratedValuesStayStrings proves what
// docs/hydrogen-migration.md says of imported values: Hydrogen 1.0 stored
// strings, so a cart saved as JSON text is imported as a string; the
// upstream receives that text as it is when it is printable ASCII (the
// same bytes an object would give) and as JSON text, quotes included,
// otherwise; the browser's GET /__session shows a string; the upstream
// converts it with X-Session-Set, which its own request never shows, and
// the next request carries the object.
func TestDocsHydrogenMigratedValuesStayStrings(t *testing.T) {
	t.Parallel()
	c := StartCaddy(t, CaddyOpts{Session: "\tclient_writable cart note\n\tclient_readable *\n\tmigrate_from hydrogen_v1"})
	// Hydrogen wrote encodeURIComponent(JSON.stringify(data)), data being a
	// Record<string, string>.
	hydrogen := `{"cart":"{\"items\":[{\"id\":\"mug\",\"qty\":2}]}","note":"{\"to\":\"Zoë\"}"}`
	b := c.NewBrowser()
	b.Do(t, Req{Path: "/page", Cookie: "__session=" + url.QueryEscape(hydrogen)})
	wantSessionHeaders(t, c.Up.Last(t), map[string]string{
		"X-Session-Cart": `{"items":[{"id":"mug","qty":2}]}`,
		"X-Session-Note": `"{\"to\":\"Zo\u00eb\"}"`,
	})
	got := jsonObject(t, b.API(t, "GET", ""))
	if _, ok := got["cart"].(string); !ok {
		t.Fatalf("GET /__session after the import: cart = %#v, want a string", got["cart"])
	}
	// The upstream converts the cart once; its own request still shows the
	// imported value.
	b.Get(t, "/convert", `X-Test-Resp: X-Session-Set: {"cart":{"items":[{"id":"mug","qty":2}]}}`)
	if h := c.Up.Last(t).Header.Get("X-Session-Cart"); h != `{"items":[{"id":"mug","qty":2}]}` {
		t.Fatalf("the converting request's X-Session-Cart = %q", h)
	}
	got = jsonObject(t, b.API(t, "GET", ""))
	if _, ok := got["cart"].(map[string]any); !ok {
		t.Fatalf("GET /__session after the conversion: cart = %#v, want an object", got["cart"])
	}
	b.Get(t, "/next")
	if h := c.Up.Last(t).Header.Get("X-Session-Cart"); h != `{"items":[{"id":"mug","qty":2}]}` {
		t.Fatalf("the next request's X-Session-Cart = %q", h)
	}
}
