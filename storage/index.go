package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// Counter is an optional interface of a Store that can tell how many
// sessions it holds, for operators (the admin API's count). The numbers may
// be approximate when counting exactly would block the store (a Redis SCAN
// may count a key twice); each implementation documents how.
type Counter interface {
	// Count returns how many live sessions the store holds, New and
	// confirmed (see Record.New).
	Count(ctx context.Context) (Counts, error)
}

// Counts is what Counter.Count returns.
type Counts struct {
	// New is the number of sessions not confirmed yet (Record.New).
	New int `json:"new"`
	// Confirmed is the number of the others. A store that keeps no New
	// state counts every session here.
	Confirmed int `json:"confirmed"`
}

// Total is New + Confirmed.
func (c Counts) Total() int { return c.New + c.Confirmed }

// Indexer is an optional interface of a Store that can find sessions by the
// value of one of their keys, so that an operator can end every session of
// one customer at once ("log out everywhere") without a full scan.
//
// The handler calls Index once per configuration that names the key
// (index_key), before any request, and the release function when that
// configuration is unloaded; several configurations may index the same
// name at once (a reload provisions the new one before the old one goes),
// so a store counts them. From Index on, the store keeps its index up to
// date on every write: Merge (a value set, changed or deleted), Rotate (the
// session moves to its new key), Delete, expiry and eviction (or, like the
// Redis store, keeps a superset and checks each session's value when it
// deletes). A store should also find the sessions that held the key before
// Index was first called; one that cannot says so in its documentation.
//
// Values are compared by JSON value, not by their text (see IndexValue):
// "gid:\/\/x" and "gid://x", or 1e2 and 100, are the same value; the
// string "42" and the number 42 are different values.
type Indexer interface {
	// Index starts maintaining the index of name, and returns the function
	// that stops it. Calling the returned function more than once has no
	// further effect.
	Index(name string) (release func())

	// DeleteByValue deletes every live session whose value of name equals
	// value (as JSON values, see IndexValue) and, when audience is not
	// empty, whose Record.Audience is audience. It returns how many it
	// deleted per audience (sessions without one count under ""). A
	// session written concurrently may or may not be deleted; one written
	// after DeleteByValue returns is not. It returns an error wrapping
	// ErrNotIndexed when name is not indexed.
	DeleteByValue(ctx context.Context, name string, value json.RawMessage, audience string) (map[string]int, error)
}

// ErrNotIndexed: DeleteByValue was asked for a key that no configuration
// indexes.
var ErrNotIndexed = errors.New("no index for that session key")

// IndexValue returns v in the form indexes compare, its canonical JSON
// text, so that every encoding of one JSON value gives the same bytes:
// strings unescaped and re-encoded one way (no HTML escaping, "\/" read as
// "/", "\u00fc" as "ü"), numbers by their exact value (100, 1e2 and 100.0
// are one number; written as plain digits, or d.ddde±x when the exponent
// is large, never rounded),
// object members sorted by name, and no white space. A store indexes and
// compares IndexValue forms, never the text a client sent. It fails when
// v is not one JSON value, or is null (a null value is a deleted key,
// which no session holds).
func IndexValue(v []byte) (json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return nil, fmt.Errorf("index value is not valid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("index value is not valid JSON: more than one value")
	}
	if x == nil {
		return nil, errors.New("index value is empty or null; give a JSON value such as \"c_42\" or 42")
	}
	var buf bytes.Buffer
	if err := canonical(&buf, x); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// canonical writes x (decoded with UseNumber) as IndexValue's form.
func canonical(buf *bytes.Buffer, x any) error {
	switch x := x.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		buf.WriteString(strconv.FormatBool(x))
	case json.Number:
		n, err := canonicalNumber(string(x))
		if err != nil {
			return err
		}
		buf.WriteString(n)
	case string:
		writeString(buf, x)
	case []any:
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := canonical(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case map[string]any:
		names := make([]string, 0, len(x))
		for n := range x {
			names = append(names, n)
		}
		sort.Strings(names)
		buf.WriteByte('{')
		for i, n := range names {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeString(buf, n)
			buf.WriteByte(':')
			if err := canonical(buf, x[n]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	default:
		return fmt.Errorf("index value: unexpected %T", x)
	}
	return nil
}

// canonicalNumber returns the one spelling IndexValue gives the value of
// the JSON number n: no sign for zero, no leading or trailing zero digits,
// plain digits (with a point where needed) when the exponent is small,
// else d.ddde±x. It works on the digits, exactly, with no float rounding.
func canonicalNumber(n string) (string, error) {
	neg := strings.HasPrefix(n, "-")
	n = strings.TrimPrefix(n, "-")
	mant, exp, _ := strings.Cut(strings.ToLower(n), "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	e := 0
	if exp != "" {
		v, err := strconv.ParseInt(exp, 10, 32)
		if err != nil {
			return "", fmt.Errorf("index value: number exponent %q out of range", exp)
		}
		e = int(v)
	}
	digits := strings.TrimLeft(intPart+frac, "0")
	e -= len(frac)
	trimmed := strings.TrimRight(digits, "0")
	e += len(digits) - len(trimmed)
	digits = trimmed
	if digits == "" {
		return "0", nil
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	switch point := len(digits) + e; {
	case e >= 0 && point <= 21:
		b.WriteString(digits)
		b.WriteString(strings.Repeat("0", e))
	case e < 0 && point > 0:
		b.WriteString(digits[:point])
		b.WriteByte('.')
		b.WriteString(digits[point:])
	case e < 0 && point > -6:
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", -point))
		b.WriteString(digits)
	default:
		b.WriteString(digits[:1])
		if len(digits) > 1 {
			b.WriteByte('.')
			b.WriteString(digits[1:])
		}
		b.WriteByte('e')
		b.WriteString(strconv.Itoa(point - 1))
	}
	return b.String(), nil
}

// writeString writes s as a JSON string without HTML escaping.
func writeString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)           // a Go string always encodes
	buf.Truncate(buf.Len() - 1) // Encode's newline
}
