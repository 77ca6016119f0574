package caddymodule

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/dustin/go-humanize"
)

// subdirectives are the parsers of a Caddyfile block, by subdirective
// name. Each is called with the dispenser on the subdirective's name and
// reads its arguments (and its own block, if it has one).
type subdirectives map[string]func(d *caddyfile.Dispenser) error

// parseBlock reads the block that opens after d's current token: each
// subdirective must be one of subs, and may appear once, except those
// named in repeatable (lists, whose values add up). Errors carry the
// line. what names a subdirective of this block in messages, with %q for
// its name: `subdirective %q of store redis`, `cookie subdirective %q`.
func parseBlock(d *caddyfile.Dispenser, what string, subs subdirectives, repeatable ...string) error {
	seen := make(map[string]bool, len(subs))
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] && !slices.Contains(repeatable, sub) {
			return d.Errf("duplicate "+what+"; give it once", sub)
		}
		parse, ok := subs[sub]
		if !ok {
			return d.Errf("unknown "+what+"; %s", sub, subs.hint(sub))
		}
		seen[sub] = true
		if err := parse(d); err != nil {
			return err
		}
	}
	return nil
}

// hint names the known subdirectives, the nearest to sub first when one
// is near enough to be a typo of it.
func (subs subdirectives) hint(sub string) string {
	known := make([]string, 0, len(subs))
	for name := range subs {
		known = append(known, name)
	}
	sort.Strings(known)
	list := "known: " + strings.Join(known, ", ")
	if near := nearest(sub, known); near != "" {
		return "did you mean " + near + "? " + list
	}
	return list
}

// nearest returns the name closest to s in edit distance, or "" when none
// is close enough to be a typo: one edit per three characters of s, at
// most three.
func nearest(s string, names []string) string {
	best, bestDist := "", min(3, len(s)/3)+1
	for _, n := range names {
		if d := editDistance(s, n); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, counting an
// exchange of two neighbouring characters as one edit (optimal string
// alignment), in bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		// No subdirective is that long: spare the quadratic work on
		// whatever a fuzzer or a pasted line puts here.
		return max(len(a), len(b))
	}
	// prev2, prev and cur are three rows of the distance matrix.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// The parsers below read a subdirective's arguments into a field; the
// set* ones return a parser for a subdirectives table.

// oneArg reads exactly one argument.
func oneArg(d *caddyfile.Dispenser) (string, error) {
	var v string
	if !d.AllArgs(&v) {
		return "", d.ArgErr()
	}
	return v, nil
}

// allArgs reads the remaining arguments, at least min of them.
func allArgs(d *caddyfile.Dispenser, min int) ([]string, error) {
	args := d.RemainingArgs()
	if len(args) < min {
		return nil, d.ArgErr()
	}
	return args, nil
}

// setString reads exactly one argument into p.
func setString(p *string) func(*caddyfile.Dispenser) error {
	return func(d *caddyfile.Dispenser) (err error) {
		*p, err = oneArg(d)
		return err
	}
}

// setStrings reads one or more arguments into p.
func setStrings(p *[]string) func(*caddyfile.Dispenser) error {
	return func(d *caddyfile.Dispenser) (err error) {
		*p, err = allArgs(d, 1)
		return err
	}
}

// setEnum reads one argument, one of values, into p.
func setEnum(p *string, values ...string) func(*caddyfile.Dispenser) error {
	return func(d *caddyfile.Dispenser) error {
		name := d.Val()
		v, err := oneArg(d)
		if err != nil {
			return err
		}
		for _, ok := range values {
			if v == ok {
				*p = v
				return nil
			}
		}
		return d.Errf("%s %q: use %s", name, v, orList(values))
	}
}

// orList writes values as "a, b or c".
func orList(values []string) string {
	if len(values) < 2 {
		return strings.Join(values, "")
	}
	return strings.Join(values[:len(values)-1], ", ") + " or " + values[len(values)-1]
}

// setInt reads one argument, a whole number from min to max (no upper
// bound when max is 0), into p.
func setInt(p *int, min, max int) func(*caddyfile.Dispenser) error {
	want := fmt.Sprintf("a whole number of at least %d", min)
	switch {
	case max != 0:
		want = fmt.Sprintf("a whole number from %d to %d", min, max)
	case min == 0:
		want = "a whole number, 0 or more"
	}
	return func(d *caddyfile.Dispenser) error {
		name := d.Val()
		v, err := oneArg(d)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < min || (max != 0 && n > max) {
			return d.Errf("%s %q: want %s", name, v, want)
		}
		*p = n
		return nil
	}
}

// setDuration reads one argument, a positive duration, into p.
func setDuration(p *caddy.Duration) func(*caddyfile.Dispenser) error {
	return func(d *caddyfile.Dispenser) error {
		name := d.Val()
		v, err := oneArg(d)
		if err == nil {
			*p, err = parseDuration(d, name, v)
		}
		return err
	}
}

// setSize reads one argument, a size of at most 1 GiB, into p.
func setSize(p *int64) func(*caddyfile.Dispenser) error {
	return func(d *caddyfile.Dispenser) (err error) {
		*p, err = parseSize(d)
		return err
	}
}

// setSwitch reads an optional on/off argument into p; none means on.
func setSwitch(p **bool) func(*caddyfile.Dispenser) error {
	return func(d *caddyfile.Dispenser) error {
		b, err := parseSwitch(d)
		if err == nil {
			*p = &b
		}
		return err
	}
}

// parseDuration reads a duration such as 30m, 12h or 30d.
func parseDuration(d *caddyfile.Dispenser, name, v string) (caddy.Duration, error) {
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur <= 0 {
		return 0, d.Errf("%s %q: want a positive duration such as 30m, 12h or 30d", name, v)
	}
	return caddy.Duration(dur), nil
}

// parseSize reads a size such as 65536, 64KiB or 1MB.
func parseSize(d *caddyfile.Dispenser) (int64, error) {
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	n, err := humanize.ParseBytes(v)
	if err != nil || n == 0 || n > 1<<30 {
		return 0, d.Errf("%s %q: want a size such as 65536, 64KiB or 1MB", name, v)
	}
	return int64(n), nil
}

// parseSwitch reads an optional on/off argument; no argument means on.
func parseSwitch(d *caddyfile.Dispenser) (bool, error) {
	name := d.Val()
	args := d.RemainingArgs()
	switch {
	case len(args) == 0:
		return true, nil
	case len(args) > 1:
		return false, d.ArgErr()
	}
	switch strings.ToLower(args[0]) {
	case "on", "true":
		return true, nil
	case "off", "false":
		return false, nil
	}
	return false, d.Errf("%s %q: use on or off (or true or false)", name, args[0])
}
