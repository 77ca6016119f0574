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
type fileRecord struct {
	Version  int                        `json:"v"`
	Created  time.Time                  `json:"created"`
	Deadline time.Time                  `json:"deadline"`
	Expires  time.Time                  `json:"expires"`
	Values   map[string]json.RawMessage `json:"values"`
}

// errNewerVersion marks a file written by a newer version of the store.
var errNewerVersion = errors.New("session file from a newer version of the store")

// encode returns a session file's contents. HTML escaping is off so that
// values come back byte for byte as they were written (json.Marshal would
// turn "<" into "\u003c" inside them).
func encode(rec *storage.Record) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err := enc.Encode(fileRecord{
		Version:  recordVersion,
		Created:  rec.Created.UTC(),
		Deadline: rec.Deadline.UTC(),
		Expires:  rec.Expires.UTC(),
		Values:   rec.Values,
	})
	return b.Bytes(), err
}

// decode parses a session file and checks it is whole and sane: a file cut
// short is not valid JSON, and one that lost fields fails the checks, so
// neither is ever served.
func decode(data []byte) (*storage.Record, error) {
	var f fileRecord
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("decode session file (%d bytes): %w", len(data), err)
	}
	switch {
	case f.Version > recordVersion:
		return nil, fmt.Errorf("%w (format %d, this one reads %d)", errNewerVersion, f.Version, recordVersion)
	case f.Version != recordVersion:
		return nil, fmt.Errorf("session file has format %d, want %d", f.Version, recordVersion)
	case f.Values == nil:
		return nil, errors.New("session file has no values")
	case f.Created.IsZero() || f.Deadline.IsZero() || f.Expires.IsZero():
		return nil, errors.New("session file lacks a time")
	}
	for k := range f.Values {
		if !storage.ValidKey(k) {
			return nil, errors.New("session file holds an invalid key")
		}
	}
	return &storage.Record{Values: f.Values, Created: f.Created, Deadline: f.Deadline, Expires: f.Expires}, nil
}
