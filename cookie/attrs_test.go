package cookie

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestValidatePartitionedPriority(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want string // substring of the error; "" for valid
	}{
		{"partitioned secure auto", Options{Partitioned: true}, ""},
		{"partitioned secure on", Options{Partitioned: true, Secure: SecureOn}, ""},
		{"partitioned secure off", Options{Partitioned: true, Secure: SecureOff}, "Partitioned cookie without Secure"},
		{"priority low", Options{Priority: PriorityLow}, ""},
		{"priority high", Options{Priority: PriorityHigh}, ""},
		{"priority unknown", Options{Priority: Priority(9)}, "low, medium or high"},
		{"priority negative", Options{Priority: Priority(-1)}, "low, medium or high"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestPartitionedForcesSecure: a partitioned cookie is Secure even over
// plain HTTP with secure auto, as browsers require.
func TestPartitionedForcesSecure(t *testing.T) {
	o := Options{Partitioned: true}
	if !o.IsSecure(false) {
		t.Fatal("IsSecure(false) = false for a partitioned cookie")
	}
	cookies, err := o.Chunks("v", time.Hour, false, 1)
	if err != nil {
		t.Fatal(err)
	}
	if line := o.Line(cookies[0]); !strings.Contains(line, "; Secure") || !strings.Contains(line, "; Partitioned") {
		t.Fatalf("line %q lacks Secure or Partitioned", line)
	}
}

// TestLineAttributes: every line the session writes, chunks and
// deletions alike, carries Partitioned and Priority when configured, and
// none of them when not.
func TestLineAttributes(t *testing.T) {
	tests := []struct {
		name   string
		o      Options
		want   []string
		absent []string
	}{
		{"neither", Options{}, nil, []string{"Partitioned", "Priority"}},
		{"partitioned", Options{Partitioned: true}, []string{"; Partitioned", "; Secure"}, []string{"Priority"}},
		{"low", Options{Priority: PriorityLow}, []string{"; Priority=Low"}, []string{"Partitioned"}},
		{"medium", Options{Priority: PriorityMedium}, []string{"; Priority=Medium"}, nil},
		{"both", Options{Partitioned: true, Priority: PriorityHigh}, []string{"; Partitioned", "; Priority=High", "; Secure"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cookies, err := tt.o.Chunks(randValue(6000), time.Hour, false, 4)
			if err != nil {
				t.Fatal(err)
			}
			if len(cookies) < 2 {
				t.Fatalf("%d cookies, want chunks", len(cookies))
			}
			session, err := tt.o.SessionChunks(randValue(6000), false, 4)
			if err != nil {
				t.Fatal(err)
			}
			var lines []string
			for _, c := range append(cookies, session...) {
				lines = append(lines, tt.o.Line(c))
			}
			lines = append(lines, tt.o.Line(tt.o.Expire(tt.o.ChunkName(0), false)), tt.o.Line(tt.o.Expire(tt.o.ChunkName(3), false)))
			for _, line := range lines {
				for _, w := range tt.want {
					if !strings.Contains(line, w) {
						t.Errorf("%.40q… lacks %q", line, w)
					}
				}
				for _, a := range tt.absent {
					if strings.Contains(line, a) {
						t.Errorf("%.40q… has %q", line, a)
					}
				}
			}
		})
	}
}

// TestChunksPriorityBoundary: the chunker counts the Priority attribute,
// which net/http does not write: a full chunk's line is exactly MaxLine-1
// bytes with it, and one byte more needs another chunk.
func TestChunksPriorityBoundary(t *testing.T) {
	for _, o := range []Options{
		{Name: "s", Priority: PriorityMedium, Partitioned: true},
		{Name: "s", Priority: PriorityHigh, Domain: "shop.example.com", Path: "/shop"},
	} {
		rooms := chunkRooms(Options{Name: o.Name, Path: o.path(), Domain: o.Domain, SameSite: http.SameSiteLaxMode}, time.Hour, true, 1)
		// chunkRooms counts neither Priority nor Partitioned.
		room := rooms[0] - len("; Priority=") - len(o.Priority.String())
		if o.Partitioned {
			room -= len("; Partitioned")
		}
		cookies, err := o.Chunks(randValue(room), time.Hour, true, 1)
		if err != nil || len(cookies) != 1 {
			t.Fatalf("%+v: a value of exactly one chunk's room: %d cookies, %v", o, len(cookies), err)
		}
		if l := len(o.Line(cookies[0])); l != MaxLine-1 {
			t.Fatalf("%+v: full chunk line is %d bytes, want %d", o, l, MaxLine-1)
		}
		if _, err := o.Chunks(randValue(room+1), time.Hour, true, 1); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%+v: one byte more in one chunk: %v, want ErrTooLarge", o, err)
		}
		cookies, err = o.Chunks(randValue(3*MaxLine), time.Hour, true, 4)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cookies {
			if l := len(o.Line(c)); l >= MaxLine {
				t.Errorf("%s: a %d-byte line", c.Name, l)
			}
		}
	}
}

// TestSessionChunks: a browser-session cookie has neither Max-Age nor
// Expires, even with a fixed end configured, and reads back whole.
func TestSessionChunks(t *testing.T) {
	o := Options{Expires: time.Now().Add(time.Hour), HTTPOnly: true}
	value := randValue(9000)
	cookies, err := o.SessionChunks(value, true, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(cookies) != 3 {
		t.Fatalf("%d cookies for 9000 bytes, want 3", len(cookies))
	}
	for _, c := range cookies {
		line := o.Line(c)
		if strings.Contains(line, "Max-Age") || strings.Contains(line, "Expires") {
			t.Errorf("session cookie line has a lifetime: %.80q…", line)
		}
		if len(line) >= MaxLine || !strings.Contains(line, "; HttpOnly") || !strings.Contains(line, "; Secure") {
			t.Errorf("line of %d bytes: %.80q…", len(line), line)
		}
	}
	got, _ := o.Read(http.Header{"Cookie": {cookieHeader(cookies)}}, 4)
	if got != value {
		t.Fatal("value does not read back")
	}
	// Without a lifetime there is more room in each chunk.
	lived, err := o.Chunks(value, time.Hour, true, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(cookies[0].Value) <= len(lived[0].Value) {
		t.Errorf("session chunk holds %d bytes, a lived one %d: the lifetime's room was not given back", len(cookies[0].Value), len(lived[0].Value))
	}
	if _, err := o.SessionChunks(randValue(5*MaxLine), true, 4); !errors.Is(err, ErrTooLarge) {
		t.Errorf("too large: %v", err)
	}
}
