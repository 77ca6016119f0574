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
//
// audience and new_until came later; a record without them reads as a
// confirmed session of no audience. new_until is set while the session is
// New (storage.Record.New): the end of its new-session life, Created + the
// NewTTL it was created with, past which no Touch and no unconfirmed Merge
// moves its expiry.
type record struct {
	Version  int                        `json:"v"`
	Created  time.Time                  `json:"created"`
	Deadline time.Time                  `json:"deadline"`
	Expires  time.Time                  `json:"expires"`
	Audience string                     `json:"audience,omitempty"`
	NewUntil time.Time                  `json:"new_until,omitzero"`
	Rotated  bool                       `json:"rotated,omitempty"` // a tombstone of Rotate, until Expires
	Ver      uint64                     `json:"ver,omitempty"`     // storage.Record.Version
	Values   map[string]json.RawMessage `json:"values"`
}

// session is a record in memory: the storage.Record, and the end of its
// new-session life while it is New (zero otherwise).
type session struct {
	*storage.Record
	newUntil time.Time
	rotated  bool // a tombstone: Rotate moved the session away from this key
}

// Live reports whether the record is a session that may be served at now
// (a tombstone is not).
func (s session) Live(now time.Time) bool { return !s.rotated && s.unexpired(now) }

// unexpired reports whether the record's time has not run out at now,
// tombstone or not.
func (s session) unexpired(now time.Time) bool { return s.Record != nil && s.Record.Live(now) }

// encode returns a record's bytes. HTML escaping is off so that values come
// back as they were written (json.Marshal would turn "<" into "\u003c").
func encode(s session) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	r := record{
		Version:  recordVersion,
		Created:  s.Created.UTC(),
		Deadline: s.Deadline.UTC(),
		Expires:  s.Expires.UTC(),
		Audience: s.Audience,
		Rotated:  s.rotated,
		Ver:      s.Version,
		Values:   s.Values,
	}
	if s.New {
		r.NewUntil = s.newUntil.UTC()
	}
	err := enc.Encode(r)
	return b.Bytes(), err
}

// decode parses a record and checks that it is whole: a record cut short or
// edited by hand is never served.
func decode(data []byte) (session, error) {
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return session{}, fmt.Errorf("decode session record (%d bytes): %w", len(data), err)
	}
	switch {
	case r.Version != recordVersion:
		return session{}, fmt.Errorf("session record has format %d, this store reads %d", r.Version, recordVersion)
	case r.Values == nil:
		return session{}, errors.New("session record has no values")
	case r.Created.IsZero() || r.Deadline.IsZero() || r.Expires.IsZero():
		return session{}, errors.New("session record lacks a time")
	}
	for k := range r.Values {
		if !storage.ValidStoredKey(k) {
			return session{}, errors.New("session record holds an invalid key")
		}
	}
	return session{
		Record: &storage.Record{
			Values: r.Values, Created: r.Created, Deadline: r.Deadline, Expires: r.Expires,
			Audience: r.Audience, New: !r.NewUntil.IsZero(), Version: r.Ver,
		},
		newUntil: r.NewUntil,
		rotated:  r.Rotated,
	}, nil
}
