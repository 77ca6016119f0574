// Package cookie holds caddy-session's cookie layer: session IDs, the signed
// and encrypted codec (gorilla/securecookie with per-secret keys derived by
// HKDF), chunking of large values across several cookies, and the cookie
// attributes. It imports nothing of Caddy.
package cookie
