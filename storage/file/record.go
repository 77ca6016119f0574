package file

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// recordVersion is written into every file, so that a later version of the
// store can change the format and still read (or at least recognize) old
// files.
const recordVersion = 1

// fileRecord is a session file's JSON. Times are RFC 3339 with
// nanoseconds, in UTC, so that an operator can read a file.
//
// audience, new and new_until came after the first files were written:
// they are left out when empty, and a file without them reads as a
// confirmed session of no audience (format 1 either way: a store that
// predates them reads such a file too, as a confirmed session).
type fileRecord struct {
	Version  int                        `json:"v"`
	Created  time.Time                  `json:"created"`
	Deadline time.Time                  `json:"deadline"`
	Expires  time.Time                  `json:"expires"`
	Audience string                     `json:"audience,omitempty"`
	New      bool                       `json:"new,omitempty"`
	NewUntil time.Time                  `json:"new_until,omitzero"`
	Ver      uint64                     `json:"ver,omitempty"` // Record.Version
	Values   map[string]json.RawMessage `json:"values"`
}

// stored is a session as this store keeps it: the Record, and while it is
// New, the end of its new-session life (its Created + the NewTTL it was
// created with), which no Touch or unconfirmed Merge moves it past.
type stored struct {
	*storage.Record
	newUntil time.Time // zero unless Record.New
}

// newCap returns the latest Expires the session may have while it is New:
// its new-session end, or its current expiry for a New file that lacks one
// (written by hand: never extended until confirmed).
func (st stored) newCap() time.Time {
	if !st.newUntil.IsZero() {
		return st.newUntil
	}
	return st.Expires
}

// errNewerVersion marks a file written by a newer version of the store.
var errNewerVersion = errors.New("session file from a newer version of the store")

// encode returns a session file's contents. HTML escaping is off so that
// values come back byte for byte as they were written (json.Marshal would
// turn "<" into "\u003c" inside them).
func encode(st stored) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	f := fileRecord{
		Version:  recordVersion,
		Created:  st.Created.UTC(),
		Deadline: st.Deadline.UTC(),
		Expires:  st.Expires.UTC(),
		Audience: st.Audience,
		New:      st.New,
		Ver:      st.Version,
		Values:   st.Values,
	}
	if st.New && !st.newUntil.IsZero() {
		f.NewUntil = st.newUntil.UTC()
	}
	err := enc.Encode(f)
	return b.Bytes(), err
}

// decode parses a session file and checks it is whole and sane: a file cut
// short is not valid JSON, and one that lost fields fails the checks, so
// neither is ever served.
func decode(data []byte) (stored, error) {
	var f fileRecord
	if err := json.Unmarshal(data, &f); err != nil {
		return stored{}, fmt.Errorf("decode session file (%d bytes): %w", len(data), err)
	}
	switch {
	case f.Version > recordVersion:
		return stored{}, fmt.Errorf("%w (format %d, this one reads %d)", errNewerVersion, f.Version, recordVersion)
	case f.Version != recordVersion:
		return stored{}, fmt.Errorf("session file has format %d, want %d", f.Version, recordVersion)
	case f.Values == nil:
		return stored{}, errors.New("session file has no values")
	case f.Created.IsZero() || f.Deadline.IsZero() || f.Expires.IsZero():
		return stored{}, errors.New("session file lacks a time")
	}
	for k := range f.Values {
		if !storage.ValidStoredKey(k) {
			return stored{}, errors.New("session file holds an invalid key")
		}
	}
	st := stored{Record: &storage.Record{
		Values: f.Values, Created: f.Created, Deadline: f.Deadline, Expires: f.Expires,
		Audience: f.Audience, New: f.New, Version: f.Ver,
	}}
	if f.New {
		st.newUntil = f.NewUntil
	}
	return st, nil
}
