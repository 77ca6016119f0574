// Package storage defines where caddy-session keeps server-side sessions: the
// Store interface that every store implements (memory, file, Redis, or your
// own), and the merge rules they share.
//
// It is plain Go with no Caddy import, so a store can be written and tested
// without a Caddy build. A store never sees a session ID: the handler gives it
// an opaque key (a hash of the ID, see Key), so that a listing of the store
// yields nothing a client could send back as a cookie.
package storage

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Store keeps sessions under opaque keys. Every method must be safe for
// concurrent use, and every write must be atomic in the store: a concurrent
// Merge of different keys into one session must keep both, and no call may
// re-create a session that Delete or Rotate removed.
//
// Every record has a deadline: a store must never keep a record past its
// Expires time, and must never return one from Load.
type Store interface {
	// Load returns the session stored under key. It returns ErrNotFound when
	// there is none or it has expired.
	Load(ctx context.Context, key string) (*Record, error)

	// Merge applies patch to the session stored under key, atomically, and
	// returns the resulting record. A nil value in patch deletes that name.
	//
	// When no live session exists under key, Merge creates one only if
	// opts.Create is true (with Created = opts.Now and Deadline =
	// opts.Deadline); otherwise it returns ErrNotFound. When
	// opts.SetDeadline is not zero, the record's Deadline becomes it,
	// whether Merge creates the record or not. The record's new Expires is
	// opts.ExpiresOf(record.Created, record.Deadline, New). Use Apply to compute the
	// merged values: it enforces opts.Limits and the key rules, and a
	// rejected merge must leave the stored session unchanged.
	Merge(ctx context.Context, key string, patch map[string]json.RawMessage, opts MergeOptions) (*Record, error)

	// Touch moves the expiry of a live session to expires, without
	// rewriting its values (a concurrent Merge must not be lost) and never
	// past its Deadline, nor, for a New session, past the new-session end
	// its creation set (Created + NewTTL): a store keeps that cap with the
	// record, since Touch carries no NewTTL. Touching a missing session is
	// not an error and must not create one.
	Touch(ctx context.Context, key string, expires time.Time) error

	// Delete removes the session stored under key. Deleting a missing
	// session is not an error.
	Delete(ctx context.Context, key string) error

	// Rotate moves the session stored under oldKey to newKey, atomically:
	// once Rotate returns, oldKey holds nothing and no later write can
	// revive it. It returns ErrNotFound when oldKey holds no live session.
	//
	// For RotationGrace after a Rotate, the store remembers oldKey: Load
	// and Merge of it (even with Create) return ErrRotated, and Touch and
	// Confirm of it do nothing. (The handler tells a request that raced a
	// sign-in from one with an expired session that way: the first must
	// neither create a session nor set a cookie.) The memory of it may
	// end earlier if the session would have expired earlier.
	Rotate(ctx context.Context, oldKey, newKey string) error
}

// Record is one stored session.
type Record struct {
	// Values maps each session key to its JSON value (compact JSON text).
	Values map[string]json.RawMessage `json:"values"`

	// Created is when the session was first written.
	Created time.Time `json:"created"`

	// Deadline is the session's absolute end (Created + max_age). No
	// activity moves it; only a Merge with MergeOptions.SetDeadline does
	// (the upstream's X-Session-Max-Age).
	Deadline time.Time `json:"deadline"`

	// Expires is when the record stops being served: the idle expiry, never
	// after Deadline. Without an idle timeout it equals Deadline; while the
	// session is New, at most Created + the new-session TTL.
	Expires time.Time `json:"expires"`

	// Version identifies the session's data: a Merge that creates the
	// session sets it to MergeOptions.Version, and every Merge with a
	// non-empty patch adds one; Touch, Confirm, Rotate and a Merge with an
	// empty patch keep it. The handler shows it as the API's ETag. A
	// record written before versions existed reads as 0.
	Version uint64 `json:"version,omitempty"`

	// Audience is the site the session belongs to (the handler's audience:
	// a host name, a cookie domain or a configured name), set when the
	// session is created and kept by Rotate. The cookie's signature is what
	// binds a session to its audience; stores keep it so that an index
	// lookup can tell sessions of different sites apart.
	Audience string `json:"audience,omitempty"`

	// New is true from the session's creation until it is confirmed: until
	// a later request presents its cookie (MergeOptions.Confirm, or
	// Confirmer.Confirm). A store that keeps no such state leaves it false.
	New bool `json:"new,omitempty"`
}

// Live reports whether the record can still be served at now.
func (r *Record) Live(now time.Time) bool {
	return r != nil && now.Before(r.Expires) && now.Before(r.Deadline)
}

// MergeOptions says how a Merge creates and bounds a session.
type MergeOptions struct {
	// Create allows Merge to create the session when none is stored.
	Create bool

	// Version is the Record.Version of a session that Merge creates. The
	// handler draws it at random (see NewVersion), so that versions of
	// different sessions do not meet.
	Version uint64

	// CheckVersion makes the Merge conditional (the API's If-Match): it
	// applies only to a live session whose Version is IfVersion, checked
	// atomically with the write. Otherwise Merge changes nothing and
	// returns ErrNotFound when there is no live session (Create is then
	// ignored), or a *VersionError holding the current record.
	CheckVersion bool
	IfVersion    uint64

	// Exclusive, with Create, makes Merge only create: when a live
	// session is stored under the key, Merge changes nothing and returns
	// ErrExists. Of several concurrent exclusive Merges of one missing
	// key, exactly one succeeds. (The handler moves sessions from a
	// previous_store with it, so that concurrent requests move a session
	// once.)
	Exclusive bool

	// Now is the time of the write, used as Created for a new session and
	// as the base of the idle expiry.
	Now time.Time

	// Deadline is the absolute deadline of a session that Merge creates.
	Deadline time.Time

	// SetDeadline, when not zero, is the record's new absolute deadline,
	// earlier or later than its current one: Merge stores it as
	// Record.Deadline on an existing session, and uses it instead of
	// Deadline on one it creates. The new Expires follows it as on any
	// write (ExpiresOf), never past it, and a store's own expiry (a TTL)
	// follows that. The handler sets it for the upstream's
	// X-Session-Max-Age ("remember me"), usually with an empty patch.
	SetDeadline time.Time

	// IdleTimeout, when positive, sets Expires to Now + IdleTimeout (never
	// past the record's Deadline); when zero, Expires is the Deadline.
	IdleTimeout time.Duration

	// Limits bound the merged session.
	Limits Limits

	// Audience is the Record.Audience of a session that Merge creates. A
	// merge into an existing session keeps the stored one.
	Audience string

	// NewTTL, when positive, makes a session that Merge creates New, and
	// bounds the Expires of a New session to its Created + NewTTL (see
	// ExpiresOf). Zero: sessions are created confirmed.
	NewTTL time.Duration

	// Confirm confirms the session: a merge into a New session clears New
	// (the request that writes presented the session's cookie).
	Confirm bool
}

// Expires returns the expiry a write at o.Now gives a confirmed record
// whose absolute deadline is deadline.
func (o MergeOptions) Expires(deadline time.Time) time.Time {
	if o.IdleTimeout <= 0 {
		return deadline
	}
	if e := o.Now.Add(o.IdleTimeout); e.Before(deadline) {
		return e
	}
	return deadline
}

// ExpiresOf returns the expiry a write at o.Now gives a record created at
// created with the absolute deadline deadline, New or not (after the
// write: a confirming write passes isNew false). A New record ends at
// created + NewTTL at the latest.
func (o MergeOptions) ExpiresOf(created, deadline time.Time, isNew bool) time.Time {
	e := o.Expires(deadline)
	if isNew && o.NewTTL > 0 {
		if n := created.Add(o.NewTTL); n.Before(e) {
			return n
		}
	}
	return e
}

// Confirmer is an optional interface of a Store that keeps the New state
// of its sessions (Record.New). The handler calls Confirm once, when a
// request presents the cookie of a New session and writes nothing to it
// (a write confirms through MergeOptions.Confirm instead).
type Confirmer interface {
	// Confirm clears New on the live session stored under key and moves
	// its expiry to expires, never past its Deadline, without rewriting
	// its values. Confirming a missing session is not an error and must
	// not create one; confirming a confirmed one only moves its expiry.
	Confirm(ctx context.Context, key string, expires time.Time) error
}

// RotationGrace is how long a store remembers a key that Rotate moved a
// session away from (see Store.Rotate and ErrRotated).
const RotationGrace = 60 * time.Second

// VersionError is what a conditional Merge (MergeOptions.CheckVersion)
// or DeleteVersion returns when the stored session is at another version.
type VersionError struct {
	// Current is the stored session, as Load would return it.
	Current *Record
}

// Error says what happened.
func (e *VersionError) Error() string {
	return fmt.Sprintf("session is at version %d, not the one the write expected", e.Current.Version)
}

// NextVersion is the Version a Merge of patch gives a stored session at
// version cur: cur + 1, or cur for an empty patch.
func NextVersion(cur uint64, patch map[string]json.RawMessage) uint64 {
	if len(patch) == 0 {
		return cur
	}
	return cur + 1
}

// MaxInitialVersion bounds a created session's Version (52 bits), so that
// stores that count in floating point (Lua in Redis) or in signed 64-bit
// integers (PostgreSQL's bigint) stay exact for as many writes as a
// session can take.
const MaxInitialVersion = 1<<52 - 1

// VersionedDeleter is an optional interface of a Store: a delete that
// happens only when the session is at a version (the API's DELETE with
// If-Match), checked atomically. The built-in stores implement it; the
// handler answers such a DELETE with 412 for a store that does not.
type VersionedDeleter interface {
	// DeleteVersion removes the live session under key if its Version is
	// version. It returns ErrNotFound when there is none (ErrRotated for a
	// key rotated away moments ago), and a *VersionError holding the
	// current record when it is at another version.
	DeleteVersion(ctx context.Context, key string, version uint64) error
}

// Errors a Store returns. Wrap them with fmt.Errorf("...: %w", err) to add
// context; callers test them with errors.Is.
var (
	// ErrNotFound: no live session under that key.
	ErrNotFound = errors.New("session not found")

	// ErrRotated: the session under that key was moved to another key by
	// Rotate less than RotationGrace ago. It wraps ErrNotFound, so that
	// errors.Is(err, ErrNotFound) holds for it too.
	ErrRotated = fmt.Errorf("%w: it was rotated to a new ID moments ago", ErrNotFound)

	// ErrExists: an exclusive Merge (MergeOptions.Exclusive) found a live
	// session under its key.
	ErrExists = errors.New("session already exists")

	// ErrUnavailable: the store could not be reached or did not answer in
	// time. The handler applies its on_store_error policy.
	ErrUnavailable = errors.New("session store unavailable")
)

// NewVersion returns a random initial Version for a session being
// created, at most MaxInitialVersion.
func NewVersion() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return binary.BigEndian.Uint64(b[:]) & MaxInitialVersion
}
