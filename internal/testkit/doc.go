// Package testkit runs the real processes that caddy-session's tests drive:
// the Caddy binary built from this tree, redis-server (standalone, TLS,
// Cluster, Sentinel) and PostgreSQL, each on spare loopback ports that no
// other test, of this process or of another one, holds at the same time.
//
// It is a normal package under internal/ so that every test package of the
// module can share it, and it imports nothing of Caddy so that the plain Go
// packages (storage/...) can use it too.
//
// Conventions:
//   - A process a test starts is stopped when the test ends (t.Cleanup), and
//     on Linux the kernel kills it if the test binary dies first.
//   - A tool that is not installed skips the test with a message that says
//     what to install; with CI set in the environment it fails the test
//     instead, so that a broken CI image cannot pass by skipping.
//   - CADDY_SESSION_RACE=1 builds Caddy with the race detector; whatever
//     the build, a test whose Caddy printed a data race or a Go panic fails.
package testkit
