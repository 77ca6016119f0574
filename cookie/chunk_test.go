package cookie

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// randValue returns n bytes of base64url text, as Encode produces.
func randValue(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return string(b)
}

// chunkRooms computes, independently of Chunks, how many value bytes each
// of maxChunks cookies can hold: MaxLine-1 minus the rest of its line.
func chunkRooms(o Options, maxAge time.Duration, secure bool, maxChunks int) []int {
	rooms := make([]int, maxChunks)
	for i := range rooms {
		name := o.Name
		if i > 0 {
			name += "." + strconv.Itoa(i)
		}
		c := &http.Cookie{
			Name: name, Path: o.Path, Domain: o.Domain,
			MaxAge:  int((maxAge + time.Second - 1) / time.Second),
			Expires: time.Now().Add(maxAge),
			Secure:  secure, HttpOnly: o.HTTPOnly, SameSite: o.SameSite,
		}
		rooms[i] = MaxLine - 1 - len(c.String())
	}
	return rooms
}

// cookieHeader renders cookies as a browser sends them back.
func cookieHeader(cookies []*http.Cookie) string {
	pairs := make([]string, len(cookies))
	for i, c := range cookies {
		pairs[i] = c.Name + "=" + c.Value
	}
	return strings.Join(pairs, "; ")
}

func checkAttributes(t *testing.T, c *http.Cookie, o Options, secure bool) {
	t.Helper()
	line := c.String()
	if line == "" {
		t.Fatalf("cookie %q renders as nothing", c.Name)
	}
	for _, want := range []string{"; Path=" + o.Path, "; Domain=" + o.Domain, "; HttpOnly", "; SameSite=Lax", "; Max-Age=", "; Expires="} {
		if !strings.Contains(line, want) {
			t.Errorf("%s: %q lacks %q", c.Name, line, want)
		}
	}
	if got := strings.Contains(line, "; Secure"); got != secure {
		t.Errorf("%s: Secure = %v, want %v in %q", c.Name, got, secure, line)
	}
}

func TestChunks(t *testing.T) {
	o := Options{Name: "__session", Path: "/", Domain: "shop.example.com", HTTPOnly: true, SameSite: http.SameSiteLaxMode}
	const maxChunks = 4
	maxAge := 30 * 24 * time.Hour
	for _, secure := range []bool{false, true} {
		rooms := chunkRooms(o, maxAge, secure, maxChunks)
		capacity := 0
		for _, r := range rooms {
			capacity += r
		}
		t.Logf("secure=%v: %d chunks hold %d bytes (%v)", secure, maxChunks, capacity, rooms)
		if 20*1024 <= capacity || 10*1024 > capacity {
			t.Fatalf("capacity %d: expected between 10 KiB and 20 KiB", capacity)
		}
		sizes := []int{0, 100, 3 * 1024, rooms[0], rooms[0] + 1, 10 * 1024, capacity - 1, capacity, capacity + 1, 20 * 1024}
		for _, size := range sizes {
			t.Run(strconv.Itoa(size)+"/secure="+strconv.FormatBool(secure), func(t *testing.T) {
				value := randValue(size)
				cookies, err := o.Chunks(value, maxAge, secure, maxChunks)
				if size > capacity {
					if !errors.Is(err, ErrTooLarge) || cookies != nil {
						t.Fatalf("Chunks(%d bytes) = %d cookies, %v; want ErrTooLarge", size, len(cookies), err)
					}
					return
				}
				if err != nil {
					t.Fatalf("Chunks(%d bytes): %v", size, err)
				}
				// The fewest chunks: the smallest n whose rooms add up.
				want, sum := 0, 0
				for want == 0 || sum < size {
					sum += rooms[want]
					want++
				}
				if len(cookies) != want {
					t.Fatalf("%d bytes in %d chunks, want %d", size, len(cookies), want)
				}
				var joined strings.Builder
				for i, c := range cookies {
					if c.Name != o.ChunkName(i) {
						t.Errorf("chunk %d named %q", i, c.Name)
					}
					if l := len(c.String()); l >= MaxLine {
						t.Errorf("chunk %d: Set-Cookie line is %d bytes", i, l)
					}
					if err := c.Valid(); err != nil {
						t.Errorf("chunk %d: %v", i, err)
					}
					checkAttributes(t, c, o, secure)
					if c.MaxAge != int(maxAge/time.Second) {
						t.Errorf("chunk %d: Max-Age %d", i, c.MaxAge)
					}
					if d := time.Until(c.Expires) - maxAge; d > time.Second || d < -5*time.Second {
						t.Errorf("chunk %d: Expires off by %v", i, d)
					}
					joined.WriteString(c.Value)
				}
				if joined.String() != value {
					t.Fatal("chunks do not join back to the value")
				}

				// A browser sends them back, in any order, among others.
				shuffled := append([]*http.Cookie{{Name: "_ga", Value: "GA1.2.3"}}, cookies...)
				rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				h := http.Header{"Cookie": {cookieHeader(shuffled)}}
				got, present := o.Read(h, maxChunks)
				if got != value {
					t.Fatalf("Read returned %d bytes, want the %d-byte value", len(got), len(value))
				}
				if len(present) != len(cookies) {
					t.Fatalf("present = %v, want %d indexes", present, len(cookies))
				}
				for i, p := range present {
					if p != i {
						t.Fatalf("present = %v", present)
					}
				}
			})
		}
	}
}

// TestChunksBoundary checks the exact edge: a line of MaxLine-1 bytes is
// allowed, MaxLine is not.
func TestChunksBoundary(t *testing.T) {
	o := Options{Name: "s", Path: "/", HTTPOnly: true}
	rooms := chunkRooms(Options{Name: "s", Path: "/", HTTPOnly: true, SameSite: http.SameSiteLaxMode}, time.Hour, false, 2)
	cookies, err := o.Chunks(randValue(rooms[0]), time.Hour, false, 1)
	if err != nil || len(cookies) != 1 {
		t.Fatalf("a value of exactly one chunk's room: %d cookies, %v", len(cookies), err)
	}
	if l := len(cookies[0].String()); l != MaxLine-1 {
		t.Fatalf("full chunk line is %d bytes, want %d", l, MaxLine-1)
	}
	if _, err := o.Chunks(randValue(rooms[0]+1), time.Hour, false, 1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("one byte more in one chunk: %v, want ErrTooLarge", err)
	}
	cookies, err = o.Chunks(randValue(rooms[0]+1), time.Hour, false, 2)
	if err != nil || len(cookies) != 2 || len(cookies[1].Value) != 1 {
		t.Fatalf("one byte more in two chunks: %d cookies, %v", len(cookies), err)
	}
}

// TestChunksEncoded: realistic session payloads through the codec.
func TestChunksEncoded(t *testing.T) {
	c := mustCodec(t, secretA)
	o := Options{Path: "/", HTTPOnly: true}
	tests := []struct {
		payload   int
		wantFit   bool
		maxChunks int
	}{
		{100, true, 4},
		{2 * 1024, true, 1},
		{3 * 1024, true, 4},
		{6 * 1024, true, 4},
		{10 * 1024, false, 4}, // ~18 KiB once encrypted and base64-encoded twice
		{20 * 1024, false, 4},
	}
	for _, tt := range tests {
		enc, err := c.Encode(o.ChunkName(0), "", payload(tt.payload))
		if err != nil {
			t.Fatal(err)
		}
		cookies, err := o.Chunks(enc, DefaultMaxAge, true, tt.maxChunks)
		t.Logf("payload %d B -> value %d B -> %d cookies, err %v", tt.payload, len(enc), len(cookies), err)
		if tt.wantFit != (err == nil) {
			t.Errorf("payload %d B: err %v, want fit %v", tt.payload, err, tt.wantFit)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("payload %d B: %v is not ErrTooLarge", tt.payload, err)
			}
			continue
		}
		value, _ := o.Read(http.Header{"Cookie": {cookieHeader(cookies)}}, tt.maxChunks)
		var got map[string]any
		if _, err := c.Decode(o.ChunkName(0), "", value, &got); err != nil || len(got) == 0 {
			t.Errorf("payload %d B: decode after Read: %v", tt.payload, err)
		}
	}
}

func TestChunksLifetime(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name       string
		expires    time.Time
		maxAge     time.Duration
		wantMaxAge int
		wantExp    time.Time
	}{
		{"whole seconds", time.Time{}, 10 * time.Second, 10, now.Add(10 * time.Second)},
		{"rounded up", time.Time{}, 1500 * time.Millisecond, 2, now.Add(1500 * time.Millisecond)},
		{"under a second", time.Time{}, time.Millisecond, 1, now.Add(time.Millisecond)},
		{"zero is one second", time.Time{}, 0, 1, now.Add(time.Second)},
		{"negative is one second", time.Time{}, -time.Hour, 1, now.Add(time.Second)},
		{"fixed end earlier", now.Add(time.Hour), 30 * 24 * time.Hour, 3600, now.Add(time.Hour)},
		{"fixed end later", now.Add(48 * time.Hour), time.Hour, 3600, now.Add(time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{Expires: tt.expires}
			cookies, err := o.Chunks("v", tt.maxAge, false, 1)
			if err != nil {
				t.Fatal(err)
			}
			c := cookies[0]
			if d := c.MaxAge - tt.wantMaxAge; d < -1 || d > 0 || c.MaxAge < 1 {
				t.Errorf("Max-Age = %d, want %d", c.MaxAge, tt.wantMaxAge)
			}
			if d := c.Expires.Sub(tt.wantExp); d < -time.Second || d > 2*time.Second {
				t.Errorf("Expires = %v, want about %v", c.Expires, tt.wantExp)
			}
			if !strings.Contains(c.String(), "; Max-Age=") || !strings.Contains(c.String(), "; Expires=") {
				t.Errorf("line lacks Max-Age or Expires: %q", c.String())
			}
		})
	}
}

func TestChunksAttributes(t *testing.T) {
	tests := []struct {
		name   string
		o      Options
		secure bool
		want   []string
		absent []string
	}{
		{"zero SameSite is Lax", Options{HTTPOnly: true}, false, []string{"__session=v", "; Path=/", "; HttpOnly", "; SameSite=Lax"}, []string{"; Secure", "; Domain="}},
		{"default mode is Lax", Options{SameSite: http.SameSiteDefaultMode}, false, []string{"; SameSite=Lax"}, []string{"; HttpOnly"}},
		{"Strict", Options{SameSite: http.SameSiteStrictMode}, true, []string{"; SameSite=Strict", "; Secure"}, nil},
		{"None forces Secure", Options{SameSite: http.SameSiteNoneMode}, false, []string{"; SameSite=None", "; Secure"}, nil},
		{"__Host- forces Secure", Options{Name: "__Host-s"}, false, []string{"__Host-s=v", "; Secure", "; Path=/"}, []string{"; Domain="}},
		{"domain leading dot", Options{Domain: ".example.com"}, false, []string{"; Domain=example.com"}, nil},
		{"path", Options{Path: "/shop"}, false, []string{"; Path=/shop"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.o.Validate(); err != nil {
				t.Fatal(err)
			}
			cookies, err := tt.o.Chunks("v", time.Hour, tt.secure, 4)
			if err != nil {
				t.Fatal(err)
			}
			exp := tt.o.Expire(tt.o.ChunkName(2), tt.secure)
			for _, line := range []string{cookies[0].String(), exp.String()} {
				for _, w := range tt.want {
					if strings.HasSuffix(w, "=v") && line == exp.String() {
						continue
					}
					if !strings.Contains(line, w) {
						t.Errorf("%q lacks %q", line, w)
					}
				}
				for _, a := range tt.absent {
					if strings.Contains(line, a) {
						t.Errorf("%q has %q", line, a)
					}
				}
			}
		})
	}
}

func TestChunksRejects(t *testing.T) {
	o := Options{}
	for _, v := range []string{"a b", "a;b", "a,b", `a"b`, `a\b`, "a\x00", "é"} {
		_, err := o.Chunks(v, time.Hour, false, 4)
		if err == nil || errors.Is(err, ErrTooLarge) {
			t.Errorf("Chunks(%q) = %v, want a value error", v, err)
		}
	}
	// maxChunks below 1 means one cookie.
	if c, err := o.Chunks("v", time.Hour, false, 0); err != nil || len(c) != 1 {
		t.Errorf("maxChunks 0: %d cookies, %v", len(c), err)
	}
	if _, err := o.Chunks(randValue(5000), time.Hour, false, 0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("maxChunks 0, 5000 bytes: %v", err)
	}
	// maxChunks above MaxChunksLimit means MaxChunksLimit.
	if c, err := o.Chunks(randValue(100*1024), time.Hour, false, 1000); err != nil || len(c) <= 4 || len(c) > MaxChunksLimit {
		t.Errorf("maxChunks 1000, 100 KiB: %d cookies, %v", len(c), err)
	}
	if _, err := o.Chunks(randValue(MaxChunksLimit*MaxLine), time.Hour, false, 1000); !errors.Is(err, ErrTooLarge) {
		t.Errorf("maxChunks 1000, %d bytes: %v", MaxChunksLimit*MaxLine, err)
	}
}

func TestExpire(t *testing.T) {
	o := Options{Name: "__session", Path: "/", Domain: "shop.example.com", HTTPOnly: true, SameSite: http.SameSiteLaxMode}
	for _, secure := range []bool{false, true} {
		for _, name := range []string{"__session", "__session.3"} {
			c := o.Expire(name, secure)
			if c.Name != name || c.Value != "" || c.MaxAge >= 0 || !c.Expires.Before(time.Now()) {
				t.Errorf("Expire(%q) = %+v", name, c)
			}
			line := c.String()
			if !strings.HasPrefix(line, name+"=;") || !strings.Contains(line, "; Max-Age=0") ||
				!strings.Contains(line, "; Expires=Thu, 01 Jan 1970 00:00:00 GMT") {
				t.Errorf("Expire line %q", line)
			}
			checkAttributes(t, c, o, secure)
		}
	}
}
