//go:build !linux

package caddymodule

// networkFilesystem cannot tell on this system: it reports a local one.
func networkFilesystem(string) string { return "" }
