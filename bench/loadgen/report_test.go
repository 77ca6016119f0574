package main

import (
	"math"
	"testing"
)

// run builds a run record for summarise.
func run(config string, pair int, rps, cpu float64) runRecord {
	return runRecord{Config: config, Pair: pair, CaddyCPUus: cpu, Result: &Result{RPS: rps}}
}

// TestSummariseSameTraffic checks the ratios to the baseline and to the
// configuration that carries the same traffic without the module.
func TestSummariseSameTraffic(t *testing.T) {
	runs := []runRecord{
		run("baseline", 1, 1000, 100), run("traffic-id", 1, 900, 110),
		run("baseline", 2, 1000, 100), run("memory", 2, 855, 116),
		run("baseline", 3, 1000, 100), run("cookie", 3, 800, 125),
		run("baseline", 4, 1000, 100), run("nosession", 4, 990, 101),
		run("baseline", 5, 1000, 100), run("traffic-vary", 5, 1000, 100),
	}
	rows, err := summarise(runs, "baseline")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]row{}
	for _, r := range rows {
		got[r.Config] = r
	}
	near := func(name string, v, want float64) {
		t.Helper()
		if math.Abs(v-want) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	near("memory ratio", got["memory"].Ratio, 0.855)
	near("memory same traffic", got["memory"].SameTraffic, 0.95)
	near("memory same-traffic CPU", got["memory"].SameTrafficCPU, 110.0/116)
	if got["memory"].SameTrafficOf != "traffic-id" {
		t.Errorf("memory compared with %q, want traffic-id", got["memory"].SameTrafficOf)
	}
	near("nosession same traffic", got["nosession"].SameTraffic, 0.99)
	if got["nosession"].SameTrafficOf != "traffic-vary" {
		t.Errorf("nosession compared with %q, want traffic-vary", got["nosession"].SameTrafficOf)
	}
	// No traffic-data run: the cookie row has no same-traffic ratio.
	if got["cookie"].SameTraffic != 0 || got["cookie"].SameTrafficOf != "" {
		t.Errorf("cookie has a same-traffic ratio %v (%q) without a traffic-data run", got["cookie"].SameTraffic, got["cookie"].SameTrafficOf)
	}
	if m := got["memory"].Meets; m == nil || *m {
		t.Errorf("memory at 0.855 meets the 0.95 target: %v", m)
	}
	if rows[0].Config != "baseline" || rows[1].Config != "traffic-vary" || rows[2].Config != "traffic-id" {
		t.Errorf("order: %s, %s, %s; want baseline, traffic-vary, traffic-id first", rows[0].Config, rows[1].Config, rows[2].Config)
	}
}

// TestSummariseRelativeTarget: memory-1m's target is relative to
// memory-1k, not to the baseline.
func TestSummariseRelativeTarget(t *testing.T) {
	for _, tc := range []struct {
		rps1m float64
		meets bool
	}{{910, true}, {890, false}} {
		rows, err := summarise([]runRecord{
			run("baseline", 1, 2000, 100), run("memory-1k", 1, 1000, 120),
			run("baseline", 2, 2000, 100), run("memory-1m", 2, tc.rps1m, 130),
		}, "baseline")
		if err != nil {
			t.Fatal(err)
		}
		r := rows[len(rows)-1]
		if r.Config != "memory-1m" || r.TargetOf != "memory-1k" || r.Meets == nil || *r.Meets != tc.meets {
			t.Fatalf("rps %v: row %+v, want a target relative to memory-1k, met=%v", tc.rps1m, r, tc.meets)
		}
		if math.Abs(r.RelRatio-tc.rps1m/1000) > 1e-9 {
			t.Errorf("relative ratio %v, want %v", r.RelRatio, tc.rps1m/1000)
		}
	}
}

// TestSummariseAPI: the API write runs (api-<store>) get a table of their
// own, in store order, and stay out of the throughput table.
func TestSummariseAPI(t *testing.T) {
	api := func(config string, p50, p99 float64) runRecord {
		return runRecord{Config: config, Conns: 4, Result: &Result{RPS: 100, P50Ms: p50, P99Ms: p99}}
	}
	runs := []runRecord{
		run("baseline", 1, 1000, 100), run("postgres", 1, 800, 120),
		api("api-postgres", 2, 9), api("api-memory", 0.5, 2), api("api-postgres", 3, 12), api("api-postgres", 1, 7),
	}
	rows, err := summarise(runs, "baseline")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[1].Config != "postgres" || rows[1].Target == nil || *rows[1].Target != 0.80 ||
		rows[1].SameTrafficOf != "" {
		t.Fatalf("throughput rows %+v: want baseline and postgres (target 0.80) only", rows)
	}
	a := summariseAPI(runs)
	if len(a) != 2 || a[0].Config != "api-memory" || a[1].Config != "api-postgres" {
		t.Fatalf("API rows %+v: want api-memory, api-postgres", a)
	}
	if p := a[1]; p.Runs != 3 || p.P50Ms != 2 || p.P99Ms != 9 || p.P99MaxMs != 12 || p.Conns != 4 {
		t.Errorf("api-postgres %+v: want 3 runs, p50 2, p99 9, worst p99 12, 4 conns", p)
	}
}
