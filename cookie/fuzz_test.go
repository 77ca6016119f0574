package cookie

import (
	"encoding/base64"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Seeds are minted anew in each fuzzing process (random IVs, timestamps),
// so a value that verifies is recognised by its content: one of the
// payloads minted below, never anything else.
func decodedOneOf(m map[string]any, payloads ...map[string]any) bool {
	for _, p := range payloads {
		if reflect.DeepEqual(m, p) {
			return true
		}
	}
	return false
}

func FuzzDecode(f *testing.F) {
	c := mustCodec(f, secretA, secretB)
	o := Options{HTTPOnly: true}
	good, err := c.Encode("__session", "", map[string]any{"customerId": "c_42", "n": 1})
	if err != nil {
		f.Fatal(err)
	}
	stale, _ := mustCodec(f, secretB).Encode("__session", "", map[string]any{"old": true})
	big, _ := c.Encode("__session", "", payload(5*1024))
	chunks, err := o.Chunks(big, time.Hour, true, 4)
	if err != nil || len(chunks) < 2 {
		f.Fatalf("seed chunks: %d, %v", len(chunks), err)
	}
	var payloads []map[string]any
	for _, v := range []string{good, stale, big} {
		var m map[string]any
		if _, err := c.Decode("__session", "", v, &m); err != nil {
			f.Fatal(err)
		}
		payloads = append(payloads, m)
	}
	b64 := base64.URLEncoding.EncodeToString

	f.Add(good, "__session="+good, uint16(0), byte('A'))
	f.Add(stale, "a=1; __session="+stale+"; b=2", uint16(17), byte('='))
	f.Add(big, cookieHeader(chunks), uint16(100), byte('|'))
	f.Add("", "", uint16(0), byte(0))
	f.Add("not base64!", "__session=; __session.1=x; __session.3=y", uint16(5), byte('_'))
	f.Add(b64([]byte("1|"+b64(make([]byte, 17))+"|"+strings.Repeat("m", 32))), "__session.1=x", uint16(1), byte('-'))
	f.Add(b64([]byte("||")), `__session="`+good+`"`, uint16(9999), byte(0xff))

	f.Fuzz(func(t *testing.T, value, header string, pos uint16, b byte) {
		check := func(what, v string) {
			var m map[string]any
			_, err := c.Decode("__session", "", v, &m)
			if err == nil && !decodedOneOf(m, payloads...) {
				t.Fatalf("%s: a value we did not mint decodes: %q", what, v)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("%s: error %v does not wrap ErrInvalid", what, err)
			}
		}
		check("raw value", value)

		h := http.Header{"Cookie": {header}}
		v, present := o.Read(h, 4)
		if !slices.IsSorted(present) || len(slices.Compact(slices.Clone(present))) != len(present) {
			t.Fatalf("present %v is not ascending and unique", present)
		}
		if len(present) > 0 && (present[0] < 0 || present[len(present)-1] > 4+extraIndexes) {
			t.Fatalf("present %v out of range", present)
		}
		if len(v) > 4*(MaxLine-1) {
			t.Fatalf("Read returned %d bytes", len(v))
		}
		check("chunked value", v)

		tampered := []byte(good)
		tampered[int(pos)%len(tampered)] = b
		check("tampered value", string(tampered))
	})
}

// oracleRead is Read written plainly, to compare the fast one against.
func oracleRead(lines []string, name string, maxChunks int) (string, []int) {
	if maxChunks < 1 {
		maxChunks = 1
	}
	if maxChunks > MaxChunksLimit {
		maxChunks = MaxChunksLimit
	}
	limit := maxChunks + extraIndexes
	seen := map[int]string{}
	for _, line := range lines {
		for _, part := range strings.Split(line, ";") {
			n, v, _ := strings.Cut(oracleTrim(part), "=")
			n = oracleTrim(n)
			idx := -1
			if n == name {
				idx = 0
			} else if rest, ok := strings.CutPrefix(n, name+"."); ok && rest != "" && rest[0] != '0' && len(rest) < 10 && strings.Trim(rest, "0123456789") == "" {
				idx, _ = strconv.Atoi(rest)
			}
			if idx < 0 || idx > limit {
				continue
			}
			if _, dup := seen[idx]; !dup {
				if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				seen[idx] = v
			}
		}
	}
	var present []int
	for i := range seen {
		present = append(present, i)
	}
	slices.Sort(present)
	value := ""
	for i := 0; i < maxChunks; i++ {
		v, ok := seen[i]
		if !ok {
			break
		}
		if len(v) >= MaxLine {
			return "", present
		}
		value += v
	}
	return value, present
}

func oracleTrim(s string) string {
	return strings.TrimFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f })
}

// oracleIsSession is IsSessionCookie written plainly.
func oracleIsSession(n, name string) bool {
	rest, ok := strings.CutPrefix(n, name+".")
	return n == name || ok && rest != "" && strings.Trim(rest, "0123456789") == ""
}

func FuzzRead(f *testing.F) {
	f.Add("__session=a; __session.1=b", "__session.2=c; x=1", uint8(4))
	f.Add("__session.1=b;__session=a;__session=z", "", uint8(1))
	f.Add(`s="q"; s.3=x; s.01=y; s.12=z`, "s.1=w", uint8(3))
	f.Add(" \t__session = v ;;; ", "__session.13=x", uint8(0))
	f.Add("s=a;s.1="+strings.Repeat("x", MaxLine), "", uint8(2))
	f.Fuzz(func(t *testing.T, line1, line2 string, mc uint8) {
		lines := []string{line1, line2}
		maxChunks := int(mc) // up to 255: past MaxChunksLimit
		for _, o := range []Options{{}, {Name: "s"}} {
			h := http.Header{"Cookie": slices.Clone(lines)}
			got, present := o.Read(h, maxChunks)
			want, wantPresent := oracleRead(lines, o.name(), maxChunks)
			if got != want || !slices.Equal(present, wantPresent) {
				t.Fatalf("%s: Read = %q, %v; oracle %q, %v", o.name(), got, present, want, wantPresent)
			}
			if !slices.Equal(h["Cookie"], lines) {
				t.Fatal("Read changed the header")
			}
		}
	})
}

func FuzzStripCookies(f *testing.F) {
	f.Add("a=1; __session=x; b=2", "__session.1=y", true)
	f.Add("__session.x=1; __sessionX=2; __session.2=3", "", false)
	f.Add("\t__session\v=x;s=1;s.7=2;s.x=3", ";;;", true)
	f.Add(`c="a b"; d = e ;=f;g`, "__session", false)
	f.Add("x=__session;y=s.1", "s", true)
	f.Fuzz(func(t *testing.T, line1, line2 string, two bool) {
		lines := []string{line1}
		if two {
			lines = append(lines, line2)
		}
		for _, o := range []Options{{}, {Name: "s"}} {
			name := o.name()
			h := http.Header{"Cookie": slices.Clone(lines)}
			o.StripCookies(h)
			got, ok := h["Cookie"]

			// What the contract says should be left.
			var want []string
			changed := false
			for _, line := range lines {
				var kept []string
				ours := false
				for _, part := range strings.Split(line, ";") {
					p := oracleTrim(part)
					n, _, _ := strings.Cut(p, "=")
					if oracleIsSession(oracleTrim(n), name) {
						ours = true
					} else if p != "" {
						kept = append(kept, p)
					}
				}
				switch {
				case !ours:
					want = append(want, line)
				case len(kept) > 0:
					want = append(want, strings.Join(kept, "; "))
					changed = true
				default:
					changed = true
				}
			}
			if changed && len(want) == 0 {
				if ok {
					t.Fatalf("%s: Cookie = %q, want it deleted", name, got)
				}
			} else if !slices.Equal(got, want) {
				t.Fatalf("%s: Cookie = %q, want %q", name, got, want)
			}

			// Nothing is left that we, or net/http, read as ours.
			for _, line := range got {
				for _, part := range strings.Split(line, ";") {
					n, _, _ := strings.Cut(oracleTrim(part), "=")
					if o.IsSessionCookie(oracleTrim(n)) {
						t.Fatalf("%s: %q left in %q", name, n, line)
					}
				}
			}
			for _, c := range (&http.Request{Header: h}).Cookies() {
				if o.IsSessionCookie(c.Name) {
					t.Fatalf("%s: net/http reads %q after stripping", name, c.Name)
				}
			}
			if v, present := o.Read(h, 4); v != "" || present != nil {
				t.Fatalf("%s: Read after stripping = %q, %v", name, v, present)
			}
		}
	})
}
