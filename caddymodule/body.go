package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// maxDepth bounds the nesting of a session value: deeper JSON is refused
// rather than stored and forwarded.
const maxDepth = 32

// ParsePatch parses a session write: a JSON object whose members are
// session keys and their new values (null deletes the key). It refuses,
// with an error a developer can act on, anything that is not exactly that:
// invalid UTF-8 or JSON, another type than an object, a key given twice,
// values nested deeper than 32 levels. Values come back as compact JSON.
// Key syntax is left to storage.Apply.
func ParsePatch(data []byte) (map[string]json.RawMessage, error) {
	if !utf8.Valid(data) {
		return nil, errors.New("body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("body is not valid JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New(`body must be a JSON object of session keys, such as {"countryCode": "DE"}`)
	}
	patch := make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("body is not valid JSON: %v", err)
		}
		key := tok.(string) // object keys are always strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("body is not valid JSON: value of %q: %v", key, err)
		}
		if _, dup := patch[key]; dup {
			return nil, fmt.Errorf("key %q appears twice in the body; send it once", key)
		}
		if depth(raw) > maxDepth {
			return nil, fmt.Errorf("value of %q is nested deeper than %d levels", key, maxDepth)
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, fmt.Errorf("body is not valid JSON: value of %q: %v", key, err)
		}
		patch[key] = buf.Bytes()
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, fmt.Errorf("body is not valid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("body must hold one JSON object and nothing after it")
	}
	return patch, nil
}

// depth returns the deepest nesting of arrays and objects in JSON text.
func depth(v []byte) int {
	d, max, inString, escaped := 0, 0, false, false
	for _, c := range v {
		switch {
		case escaped:
			escaped = false
		case inString:
			switch c {
			case '\\':
				escaped = true
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			d++
			if d > max {
				max = d
			}
		case c == '}' || c == ']':
			d--
		}
	}
	return max
}
