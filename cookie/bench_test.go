package cookie

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// payload returns a session-like map whose JSON is about n bytes.
func payload(n int) map[string]any {
	m := map[string]any{"customerId": "gid://shopify/Customer/1234567", "countryCode": "CA", "loggedIn": true, "visits": 12}
	for i := 0; ; i++ {
		if size := jsonSize(m); size >= n {
			return m
		}
		m[fmt.Sprintf("key%03d", i)] = strings.Repeat("v", 48)
	}
}

func jsonSize(m map[string]any) int {
	n := 2
	for k, v := range m {
		n += len(k) + 4
		if s, ok := v.(string); ok {
			n += len(s) + 2
		} else {
			n += 4
		}
	}
	return n
}

var benchSizes = []struct {
	name string
	n    int
}{{"100B", 100}, {"2KB", 2 * 1024}, {"10KB", 10 * 1024}}

func BenchmarkEncode(b *testing.B) {
	c := mustCodec(b, secretA, secretB)
	for _, s := range benchSizes {
		p := payload(s.n)
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Encode("__session", "", p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	c := mustCodec(b, secretA, secretB)
	for _, s := range benchSizes {
		enc, err := c.Encode("__session", "", payload(s.n))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var m map[string]any
				if _, err := c.Decode("__session", "", enc, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// A server store's cookie: the session ID alone.
	id, err := c.Encode("__session", "", NewID())
	if err != nil {
		b.Fatal(err)
	}
	b.Run("id", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got string
			if _, err := c.Decode("__session", "", id, &got); err != nil || !ValidID(got) {
				b.Fatal(got, err)
			}
		}
	})
	// A cookie only the older secret verifies costs one more MAC.
	enc, _ := mustCodec(b, secretB).Encode("__session", "", payload(100))
	b.Run("100B/stale", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m map[string]any
			if stale, err := c.Decode("__session", "", enc, &m); err != nil || !stale {
				b.Fatal(stale, err)
			}
		}
	})
}

// benchHeaders are Cookie headers as a storefront's browser sends them.
func benchHeaders(b *testing.B) map[string]string {
	others := "_shopify_y=5f1d2c3b-1111-2222-3333-444455556666; _ga=GA1.1.123456789.1700000000; cart_currency=CAD; localization=CA; _tracking_consent=%7B%22con%22%3A%7B%7D%7D"
	o := Options{}
	c := mustCodec(b, secretA)
	id, _ := c.Encode("__session", "", NewID())
	big, _ := c.Encode("__session", "", payload(6*1024))
	chunks, err := o.Chunks(big, DefaultMaxAge, true, 4)
	if err != nil {
		b.Fatal(err)
	}
	return map[string]string{
		"none":    others,
		"single":  others + "; __session=" + id,
		"chunked": others + "; " + cookieHeader(chunks),
	}
}

func BenchmarkRead(b *testing.B) {
	o := Options{}
	for _, name := range []string{"none", "single", "chunked"} {
		h := http.Header{"Cookie": {benchHeaders(b)[name]}}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				o.Read(h, 4)
			}
		})
	}
}

func BenchmarkStripCookies(b *testing.B) {
	o := Options{}
	for _, name := range []string{"none", "single", "chunked"} {
		lines := []string{benchHeaders(b)[name]}
		h := http.Header{}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h["Cookie"] = lines
				o.StripCookies(h)
			}
		})
	}
}

func BenchmarkChunks(b *testing.B) {
	o := Options{HTTPOnly: true}
	c := mustCodec(b, secretA)
	big, _ := c.Encode("__session", "", payload(6*1024))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := o.Chunks(big, DefaultMaxAge, true, 4); err != nil {
			b.Fatal(err)
		}
	}
}
