package cookie

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	long := strings.Repeat("L", MaxLine)
	tests := []struct {
		name        string
		lines       []string
		maxChunks   int
		want        string
		wantPresent []int
	}{
		{"no header", nil, 4, "", nil},
		{"other cookies", []string{"a=1; b=2; session=x; __sessionX=y; __session.x=z"}, 4, "", nil},
		{"single", []string{"a=1; __session=abc; b=2"}, 4, "abc", []int{0}},
		{"single alone", []string{"__session=abc"}, 4, "abc", []int{0}},
		{"spaces", []string{"  a=1 ;   __session=abc  ;b=2"}, 4, "abc", []int{0}},
		{"tabs", []string{"\t__session=abc\t"}, 4, "abc", []int{0}},
		{"quoted", []string{`__session="abc"`}, 4, "abc", []int{0}},
		{"empty value", []string{"__session="}, 4, "", []int{0}},
		{"no equals", []string{"__session"}, 4, "", []int{0}},
		{"chunks in order", []string{"__session=aa; __session.1=bb; __session.2=cc"}, 4, "aabbcc", []int{0, 1, 2}},
		{"chunks out of order", []string{"__session.2=cc; x=1; __session=aa; __session.1=bb"}, 4, "aabbcc", []int{0, 1, 2}},
		{"chunks over lines", []string{"__session.1=bb", "x=1; __session=aa"}, 4, "aabb", []int{0, 1}},
		{"first occurrence wins", []string{"__session=new; __session=old; __session.1=n1", "__session.1=o1"}, 4, "newn1", []int{0, 1}},
		{"gap stops the join", []string{"__session=aa; __session.2=cc; __session.3=dd"}, 4, "aa", []int{0, 2, 3}},
		{"missing first chunk", []string{"__session.1=bb; __session.2=cc"}, 4, "", []int{1, 2}},
		{"at most maxChunks", []string{"__session=a; __session.1=b; __session.2=c; __session.3=d; __session.4=e"}, 4, "abcd", []int{0, 1, 2, 3, 4}},
		{"maxChunks 1", []string{"__session=a; __session.1=b"}, 1, "a", []int{0, 1}},
		{"maxChunks 0 means 1", []string{"__session=a; __session.1=b"}, 0, "a", []int{0, 1}},
		{"leftovers up to maxChunks+8", []string{"__session=a; __session.7=x; __session.12=y; __session.13=z; __session.99999999999=w"}, 4, "a", []int{0, 7, 12}},
		{"non-canonical indexes", []string{"__session=a; __session.0=z; __session.01=y; __session.1=b; __session.+2=c; __session.-3=d"}, 4, "ab", []int{0, 1}},
		{"not our names", []string{"__session.=x; __session..1=x; __session.1x=x; __sessionX=x; __Session=x; x__session=x; __session=ok"}, 4, "ok", []int{0}},
		{"name as a value", []string{"x=__session; y=__session.1"}, 4, "", nil},
		{"oversize chunk", []string{"__session=a; __session.1=" + long}, 4, "", []int{0, 1}},
		{"chunk just under", []string{"__session=a; __session.1=" + long[1:]}, 4, "a" + long[1:], []int{0, 1}},
		{"many chunks", []string{"__session=0; __session.1=1; __session.2=2; __session.3=3; __session.4=4; __session.5=5; __session.6=6; __session.7=7; __session.8=8; __session.9=9; __session.10=A"}, 11, "0123456789A", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"large maxChunks", []string{"__session=0; __session.70=x"}, 64, "0", []int{0, 70}},
		{"maxChunks clamped", []string{"__session=0; __session.72=x; __session.73=y; __session.1000=z"}, 1000, "0", []int{0, 72}},
	}
	o := Options{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.lines != nil {
				h["Cookie"] = tt.lines
			}
			got, present := o.Read(h, tt.maxChunks)
			if got != tt.want || !reflect.DeepEqual(present, tt.wantPresent) {
				t.Errorf("Read = %.40q, %v; want %.40q, %v", got, present, tt.want, tt.wantPresent)
			}
		})
	}
}

func TestReadCustomName(t *testing.T) {
	o := Options{Name: "__Host-sid"}
	h := http.Header{"Cookie": {"__session=x; __Host-sid.1=b; __Host-sid=a; __host-sid=z"}}
	if got, present := o.Read(h, 4); got != "ab" || !reflect.DeepEqual(present, []int{0, 1}) {
		t.Errorf("Read = %q, %v", got, present)
	}
}

func TestIsSessionCookie(t *testing.T) {
	o := Options{}
	tests := []struct {
		name string
		want bool
	}{
		{"__session", true},
		{"__session.1", true},
		{"__session.2", true},
		{"__session.12", true},
		{"__session.0", true},
		{"__session.007", true},
		{"__session.99999999999999999999999", true},
		{"__session.", false},
		{"__session.x", false},
		{"__session.1x", false},
		{"__session..1", false},
		{"__session_1", false},
		{"__sessionX", false},
		{"__session1", false},
		{"__Session", false},
		{"_session", false},
		{"x__session", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := o.IsSessionCookie(tt.name); got != tt.want {
			t.Errorf("IsSessionCookie(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestStripCookies(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  []string // nil: header deleted
	}{
		{"no session cookie: untouched", []string{"a=1;b=2;  c=3 "}, []string{"a=1;b=2;  c=3 "}},
		{"only the session", []string{"__session=abc"}, nil},
		{"session and chunks only", []string{"__session=a; __session.1=b", "__session.2=c"}, nil},
		{"first", []string{"__session=abc; a=1; b=2"}, []string{"a=1; b=2"}},
		{"middle", []string{"a=1; __session=abc; b=2"}, []string{"a=1; b=2"}},
		{"last", []string{"a=1; b=2; __session=abc"}, []string{"a=1; b=2"}},
		{"others byte for byte", []string{`a=1;b="q r";__session=x;c=%7B%22k%22%7D;  d = e ;=f;g`}, []string{`a=1; b="q r"; c=%7B%22k%22%7D; d = e; =f; g`}},
		{"chunks and leftovers", []string{"__session=a; x=1; __session.1=b; __session.2=c; __session.17=z; y=2"}, []string{"x=1; y=2"}},
		{"several lines", []string{"a=1", "__session=x; b=2", "c=3; __session.1=y", "__session.2=z"}, []string{"a=1", "b=2", "c=3"}},
		{"untouched lines keep their bytes", []string{"a=1;b=2", "__session=x", " c=3 "}, []string{"a=1;b=2", " c=3 "}},
		{"look-alikes kept", []string{"__session.x=1; __sessionX=2; __session_1=3; x__session=4; __Session=5; __session.=6; __session=gone"}, []string{"__session.x=1; __sessionX=2; __session_1=3; x__session=4; __Session=5; __session.=6"}},
		{"look-alikes only: untouched", []string{"__session.x=1;__sessionX=2"}, []string{"__session.x=1;__sessionX=2"}},
		{"name as value kept", []string{"x=__session; __session=y"}, []string{"x=__session"}},
		{"spaces around the name", []string{"a=1;  __session  =x; \t__session.3=y"}, []string{"a=1"}},
		{"no equals", []string{"__session; a=1"}, []string{"a=1"}},
		{"odd digits", []string{"__session.0=a; __session.007=b; k=v"}, []string{"k=v"}},
		{"duplicates", []string{"__session=a; __session=b; k=v"}, []string{"k=v"}},
		{"empty parts dropped in a changed line", []string{";;a=1;;__session=x;;"}, []string{"a=1"}},
	}
	o := Options{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]string(nil), tt.lines...)
			h := http.Header{"Cookie": in, "X-Other": {"keep"}}
			o.StripCookies(h)
			got, ok := h["Cookie"]
			if tt.want == nil {
				if ok {
					t.Fatalf("Cookie = %q, want the header deleted", got)
				}
			} else if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Cookie = %q, want %q", got, tt.want)
			}
			if h.Get("X-Other") != "keep" {
				t.Fatal("another header changed")
			}
			if !reflect.DeepEqual(in, tt.lines) {
				t.Fatalf("the caller's slice was modified: %q", in)
			}
			// Nothing net/http would read as ours is left.
			r := &http.Request{Header: h}
			for _, c := range r.Cookies() {
				if o.IsSessionCookie(c.Name) {
					t.Fatalf("net/http still reads %q", c.Name)
				}
			}
		})
	}
}

func TestStripCookiesCustomName(t *testing.T) {
	o := Options{Name: "__Host-sid"}
	h := http.Header{"Cookie": {"__session=keep; __Host-sid=a; __Host-sid.1=b; __Host-sid2=keep"}}
	o.StripCookies(h)
	if got := h["Cookie"]; !reflect.DeepEqual(got, []string{"__session=keep; __Host-sid2=keep"}) {
		t.Errorf("Cookie = %q", got)
	}
}

func TestStripCookiesEmpty(t *testing.T) {
	h := http.Header{}
	Options{}.StripCookies(h)
	if len(h) != 0 {
		t.Errorf("header map = %v", h)
	}
	h = http.Header{"Cookie": {}}
	Options{}.StripCookies(h)
	if v, ok := h["Cookie"]; !ok || len(v) != 0 {
		t.Errorf("an empty Cookie entry changed: %v", h)
	}
}

func TestAllocations(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	o := Options{}
	others := "_shopify_y=abc; _ga=GA1.1.1.1; x=__session; __sessionX=1; __session.x=2"
	lines := []string{others, "cart=1"}
	h := http.Header{"Cookie": lines}
	if n := testing.AllocsPerRun(100, func() { o.StripCookies(h) }); n != 0 {
		t.Errorf("StripCookies without a session cookie: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { o.Read(h, 4) }); n != 0 {
		t.Errorf("Read without a session cookie: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { o.IsSessionCookie("__session.12") }); n != 0 {
		t.Errorf("IsSessionCookie: %v allocations", n)
	}
	h1 := http.Header{"Cookie": {others + "; __session=" + strings.Repeat("v", 200)}}
	if n := testing.AllocsPerRun(100, func() { o.Read(h1, 4) }); n > 1 {
		t.Errorf("Read of a single chunk: %v allocations, want at most 1 (present)", n)
	}
	if n := testing.AllocsPerRun(100, func() { h1["Cookie"] = []string{others + "; __session=x"}; o.StripCookies(h1) }); n > 4 { // 2 are the closure's
		t.Errorf("StripCookies of a single-line header: %v allocations", n)
	}
}
