package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// IndexValue returns v in the form indexes compare: compact JSON text. It
// fails when v is not one JSON value, or is null (a null value is a deleted
// key, which no session holds).
func IndexValue(v []byte) (json.RawMessage, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, v); err != nil {
		return nil, fmt.Errorf("index value is not valid JSON: %v", err)
	}
	if buf.Len() == 0 || IsNull(buf.Bytes()) {
		return nil, errors.New("index value is empty or null; give a JSON value such as \"c_42\" or 42")
	}
	return buf.Bytes(), nil
}
