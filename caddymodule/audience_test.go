package caddymodule

import "testing"

func TestHostAudience(t *testing.T) {
	for in, want := range map[string]string{
		"shop.example":        "shop.example",
		"Shop.Example":        "shop.example",
		"shop.example:8443":   "shop.example",
		"shop.example.":       "shop.example",
		"SHOP.example.:80":    "shop.example",
		".shop.example":       "shop.example",
		"127.0.0.1:2015":      "127.0.0.1",
		"[::1]:2015":          "::1",
		"[::1]":               "::1",
		"::1":                 "::1",
		"":                    "",
		"evil.example:1:2:3:": "evil.example:1:2:3:",
	} {
		if got := hostAudience(in); got != want {
			t.Errorf("hostAudience(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAudienceOfHostWithDomain(t *testing.T) {
	h := &Handler{domainAudience: "shop.example"}
	for in, want := range map[string]string{
		"shop.example":         "shop.example",
		"www.shop.example":     "shop.example",
		"API.Shop.Example:443": "shop.example",
		"other.example":        "other.example",
		"evilshop.example":     "evilshop.example", // not a subdomain
		"shop.example.evil":    "shop.example.evil",
	} {
		if got := h.audienceOfHost(in); got != want {
			t.Errorf("audienceOfHost(%q) = %q, want %q", in, got, want)
		}
	}
}
