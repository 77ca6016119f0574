package caddystorage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/caddy-session/caddy-session/storage"
)

// recordVersion is written into every record, so that a later version can
// change the format and still recognize old records.
const recordVersion = 1

// record is a session's JSON in Caddy's storage. Every record carries its
// own deadline and expiry: a storage backend has no TTL this store could
// rely on, so a reader decides from the record alone whether it is live.
type record struct {
	Version  int                        `json:"v"`
	Created  time.Time                  `json:"created"`
	Deadline time.Time                  `json:"deadline"`
	Expires  time.Time                  `json:"expires"`
	Values   map[string]json.RawMessage `json:"values"`
}

// encode returns a record's bytes. HTML escaping is off so that values come
// back as they were written (json.Marshal would turn "<" into "\u003c").
func encode(rec *storage.Record) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err := enc.Encode(record{
		Version:  recordVersion,
		Created:  rec.Created.UTC(),
		Deadline: rec.Deadline.UTC(),
		Expires:  rec.Expires.UTC(),
		Values:   rec.Values,
	})
	return b.Bytes(), err
}

// decode parses a record and checks that it is whole: a record cut short or
// edited by hand is never served.
func decode(data []byte) (*storage.Record, error) {
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decode session record (%d bytes): %w", len(data), err)
	}
	switch {
	case r.Version != recordVersion:
		return nil, fmt.Errorf("session record has format %d, this store reads %d", r.Version, recordVersion)
	case r.Values == nil:
		return nil, errors.New("session record has no values")
	case r.Created.IsZero() || r.Deadline.IsZero() || r.Expires.IsZero():
		return nil, errors.New("session record lacks a time")
	}
	for k := range r.Values {
		if !storage.ValidKey(k) {
			return nil, errors.New("session record holds an invalid key")
		}
	}
	return &storage.Record{Values: r.Values, Created: r.Created, Deadline: r.Deadline, Expires: r.Expires}, nil
}
