package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// targets are the performance goals: a configuration's median throughput
// over plain reverse_proxy's, measured in the same run.
var targets = map[string]float64{
	"nosession": 0.98,
	"cookie":    0.95,
	"memory":    0.95,
	"file":      0.90,
	"redis":     0.85,
	"postgres":  0.80,
}

// configOrder is the order of the table; other names follow, by first run.
var configOrder = []string{"baseline", "traffic-vary", "traffic-data", "traffic-id", "nosession", "cookie", "memory", "file", "redis", "postgres", "memory-1k", "memory-1m"}

// relativeTargets are goals relative to another configuration of the same
// run instead of the baseline: the memory store's cost must not grow with
// the number of sessions it holds (1M within 10% of 1k).
var relativeTargets = map[string]struct {
	of  string
	min float64
}{
	"memory-1m": {"memory-1k", 0.90},
}

// sameTraffic names, for each session configuration, the plain
// reverse_proxy configuration that carries the same traffic (the session
// cookie in, the same X-Session-* headers out, Vary on the response)
// without the module: the ratio to it is the module's own cost.
var sameTraffic = map[string]string{
	"nosession": "traffic-vary",
	"cookie":    "traffic-data",
	"memory":    "traffic-id",
	"file":      "traffic-id",
	"redis":     "traffic-id",
	"postgres":  "traffic-id",
	"memory-1k": "traffic-id",
	"memory-1m": "traffic-id",
}

// descriptions say what each configuration is.
var descriptions = map[string]string{
	"baseline":     "reverse_proxy only",
	"traffic-vary": "reverse_proxy only, with Vary: Cookie on the response (a request without a session's traffic)",
	"traffic-data": "reverse_proxy only, with a cookie-store session's traffic (cookie in, 5 headers up, Vary)",
	"traffic-id":   "reverse_proxy only, with a server-store session's traffic (cookie in, 5 headers up, Vary)",
	"nosession":    "session (cookie store), request without a cookie",
	"cookie":       "session, cookie store, 5 keys",
	"memory":       "session, memory store, 5 keys",
	"file":         "session, file store, 5 keys",
	"redis":        "session, redis store, 5 keys",
	"postgres":     "session, postgres store, 5 keys",
	"memory-1k":    "session, memory store holding 1000 sessions, each request the next one",
	"memory-1m":    "session, memory store holding --many sessions (1M), each request the next one",
}

// row is one configuration, summarised over its rounds.
type row struct {
	Config      string  `json:"config"`
	What        string  `json:"what"`
	Runs        int     `json:"runs"`
	RPSMedian   float64 `json:"rps_median"`
	RPSMin      float64 `json:"rps_min"`
	RPSMax      float64 `json:"rps_max"`
	P50Ms       float64 `json:"p50_ms_median"`
	P99Ms       float64 `json:"p99_ms_median"`
	Errors      uint64  `json:"errors"`
	Ratio       float64 `json:"ratio"`        // median rps / baseline's median rps
	PairedRatio float64 `json:"paired_ratio"` // median over rounds of rps / the adjacent baseline run's rps
	CPUus       float64 `json:"caddy_cpu_us_per_req_median,omitempty"`
	CPURatio    float64 `json:"cpu_ratio,omitempty"` // baseline's CPU per request / this one's
	// SameTraffic is the median rps over that of the configuration that
	// carries the same traffic without the module (sameTraffic), and
	// SameTrafficCPU the same for Caddy's CPU per request: the module's
	// own cost, apart from what carrying a session costs reverse_proxy.
	SameTraffic    float64  `json:"same_traffic_ratio,omitempty"`
	SameTrafficOf  string   `json:"same_traffic_config,omitempty"`
	SameTrafficCPU float64  `json:"same_traffic_cpu_ratio,omitempty"`
	Target         *float64 `json:"target,omitempty"`
	TargetOf       string   `json:"target_relative_to,omitempty"` // the target applies to req/s over this config's, not the baseline's
	Meets          *bool    `json:"meets_target,omitempty"`
	RelRatio       float64  `json:"relative_ratio,omitempty"` // req/s over TargetOf's
}

type report struct {
	Meta    map[string]string `json:"meta"`
	Configs []row             `json:"configs"`
	// API holds the API write runs (configurations named api-<store>):
	// latency, not compared with the baseline.
	API  []apiRow    `json:"api_writes,omitempty"`
	Runs []runRecord `json:"runs"`
}

// apiPrefix names the API write runs: POST /__session with a small patch
// into an existing session, few connections; what counts is their latency.
const apiPrefix = "api-"

// apiRow is one store's API write runs, summarised.
type apiRow struct {
	Config    string  `json:"config"`
	Runs      int     `json:"runs"`
	Conns     int     `json:"conns"`
	RPSMedian float64 `json:"rps_median"`
	P50Ms     float64 `json:"p50_ms_median"`
	P99Ms     float64 `json:"p99_ms_median"`
	P99MaxMs  float64 `json:"p99_ms_max"`
	Errors    uint64  `json:"errors"`
}

// summariseAPI summarises the API write runs by configuration, in the
// table's store order.
func summariseAPI(runs []runRecord) []apiRow {
	by := map[string][]runRecord{}
	var names []string
	for _, r := range runs {
		if !strings.HasPrefix(r.Config, apiPrefix) {
			continue
		}
		if _, ok := by[r.Config]; !ok {
			names = append(names, r.Config)
		}
		by[r.Config] = append(by[r.Config], r)
	}
	rank := func(n string) int {
		for i, c := range configOrder {
			if apiPrefix+c == n {
				return i
			}
		}
		return len(configOrder)
	}
	sort.SliceStable(names, func(i, j int) bool { return rank(names[i]) < rank(names[j]) })
	var rows []apiRow
	for _, name := range names {
		x := apiRow{Config: name, Runs: len(by[name])}
		var rps, p50, p99 []float64
		for _, r := range by[name] {
			rps, p50, p99 = append(rps, r.RPS), append(p50, r.P50Ms), append(p99, r.P99Ms)
			x.P99MaxMs = max(x.P99MaxMs, r.P99Ms)
			x.Errors += r.Errors
			x.Conns = r.Conns
		}
		x.RPSMedian, x.P50Ms, x.P99Ms = median(rps), median(p50), median(p99)
		rows = append(rows, x)
	}
	return rows
}

func apiText(rows []apiRow) string {
	if len(rows) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nAPI writes (POST /__session, a 1-key patch into an existing session):\n")
	fmt.Fprintf(&b, "%-14s %4s %5s %8s %7s %7s %9s %6s\n", "config", "runs", "conns", "req/s", "p50 ms", "p99 ms", "p99 max", "errors")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-14s %4d %5d %8.0f %7.2f %7.2f %9.2f %6d\n", r.Config, r.Runs, r.Conns, r.RPSMedian, r.P50Ms, r.P99Ms, r.P99MaxMs, r.Errors)
	}
	return b.String()
}

func apiMarkdown(rows []apiRow) string {
	if len(rows) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\nAPI writes: `POST /__session` with a 1-key patch into an existing session, through Caddy (medians over runs):\n\n")
	b.WriteString("| config | runs | connections | req/s (median) | p50 ms | p99 ms | p99 ms, worst run | errors |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %d | %.0f | %.2f | %.2f | %.2f | %d |\n", r.Config, r.Runs, r.Conns, r.RPSMedian, r.P50Ms, r.P99Ms, r.P99MaxMs, r.Errors)
	}
	return b.String()
}

func cmdReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	in := fs.String("in", "", "the runs, one JSON line each (loadgen run -out)")
	baseline := fs.String("baseline", "baseline", "the configuration the others are compared with")
	var outs, metas multi
	fs.Var(&outs, "out", "write the report here: .json for JSON, anything else markdown (repeatable)")
	fs.Var(&metas, "meta", "key=value shown above the table (repeatable)")
	enforce := fs.Bool("enforce", false, "exit 1 when a configuration misses its target")
	fs.Parse(args)

	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	runs, err := readRuns(f)
	f.Close()
	if err != nil {
		return err
	}
	rep := report{Meta: map[string]string{}, Runs: runs}
	var metaKeys []string
	for _, m := range metas {
		k, v, _ := strings.Cut(m, "=")
		rep.Meta[k] = v
		metaKeys = append(metaKeys, k)
	}
	rep.Configs, err = summarise(runs, *baseline)
	if err != nil {
		return err
	}
	rep.API = summariseAPI(runs)

	fmt.Print(textTable(rep.Configs))
	fmt.Print(apiText(rep.API))
	for _, out := range outs {
		var data []byte
		if strings.HasSuffix(out, ".json") {
			data, err = json.MarshalIndent(rep, "", "  ")
			if err != nil {
				return err
			}
			data = append(data, '\n')
		} else {
			data = []byte(markdown(rep, metaKeys) + apiMarkdown(rep.API))
		}
		if err := os.WriteFile(out, data, 0o644); err != nil {
			return err
		}
	}
	if *enforce {
		var missed []string
		for _, r := range rep.Configs {
			if r.Meets != nil && !*r.Meets {
				ratio, of := r.Ratio, "baseline"
				if r.TargetOf != "" {
					ratio, of = r.RelRatio, r.TargetOf
				}
				missed = append(missed, fmt.Sprintf("%s %.3f × %s < %.2f", r.Config, ratio, of, *r.Target))
			}
		}
		if len(missed) > 0 {
			return fmt.Errorf("below target: %s", strings.Join(missed, ", "))
		}
	}
	return nil
}

func readRuns(r io.Reader) ([]runRecord, error) {
	var runs []runRecord
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var rec runRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			return nil, fmt.Errorf("bad run line %q: %v", line, err)
		}
		if rec.Result == nil {
			return nil, fmt.Errorf("run line without results: %q", line)
		}
		runs = append(runs, rec)
	}
	return runs, sc.Err()
}

// summarise groups the runs by configuration: medians over rounds, and the
// ratio to the baseline, both as ratio of medians and as the median of the
// per-pair ratios (each run against the baseline run next to it, which
// cancels slow drifts in the machine's load).
func summarise(runs []runRecord, baseline string) ([]row, error) {
	by := map[string][]runRecord{}
	var names []string
	for _, r := range runs {
		if strings.HasPrefix(r.Config, apiPrefix) {
			continue // summariseAPI's
		}
		if _, ok := by[r.Config]; !ok {
			names = append(names, r.Config)
		}
		by[r.Config] = append(by[r.Config], r)
	}
	if len(by[baseline]) == 0 {
		return nil, fmt.Errorf("no %q run to compare with", baseline)
	}
	rank := func(n string) int {
		for i, c := range configOrder {
			if c == n {
				return i
			}
		}
		return len(configOrder)
	}
	sort.SliceStable(names, func(i, j int) bool { return rank(names[i]) < rank(names[j]) })

	basePair := map[int]float64{}
	for _, r := range by[baseline] {
		basePair[r.Pair] = r.RPS
	}
	var rows []row
	var baseMedian, baseCPU float64
	for _, name := range names {
		rs := by[name]
		var rps, p50, p99, paired, cpu []float64
		var errs uint64
		for _, r := range rs {
			rps = append(rps, r.RPS)
			p50 = append(p50, r.P50Ms)
			p99 = append(p99, r.P99Ms)
			errs += r.Errors
			if r.CaddyCPUus > 0 {
				cpu = append(cpu, r.CaddyCPUus)
			}
			if b, ok := basePair[r.Pair]; ok && b > 0 && name != baseline {
				paired = append(paired, r.RPS/b)
			}
		}
		sorted := append([]float64(nil), rps...)
		sort.Float64s(sorted)
		x := row{
			Config: name, What: descriptions[name], Runs: len(rs),
			RPSMedian: median(rps), RPSMin: sorted[0], RPSMax: sorted[len(sorted)-1],
			P50Ms: median(p50), P99Ms: median(p99), Errors: errs, CPUus: median(cpu),
		}
		if name == baseline {
			baseMedian = x.RPSMedian
			baseCPU = x.CPUus
			x.PairedRatio = 1
		} else {
			x.PairedRatio = median(paired)
		}
		if t, ok := targets[name]; ok {
			t := t
			x.Target = &t
		}
		rows = append(rows, x)
	}
	if baseMedian <= 0 {
		return nil, errors.New("the baseline measured no throughput")
	}
	byName := map[string]row{}
	for _, r := range rows {
		byName[r.Config] = r
	}
	for i := range rows {
		if of, ok := byName[sameTraffic[rows[i].Config]]; ok && of.RPSMedian > 0 {
			rows[i].SameTrafficOf = of.Config
			rows[i].SameTraffic = rows[i].RPSMedian / of.RPSMedian
			if of.CPUus > 0 && rows[i].CPUus > 0 {
				rows[i].SameTrafficCPU = of.CPUus / rows[i].CPUus
			}
		}
		rows[i].Ratio = rows[i].RPSMedian / baseMedian
		if baseCPU > 0 && rows[i].CPUus > 0 {
			rows[i].CPURatio = baseCPU / rows[i].CPUus
		}
		if rel, ok := relativeTargets[rows[i].Config]; ok {
			if of, ok := byName[rel.of]; ok && of.RPSMedian > 0 {
				t := rel.min
				rows[i].Target, rows[i].TargetOf = &t, rel.of
				rows[i].RelRatio = rows[i].RPSMedian / of.RPSMedian
				meets := rows[i].RelRatio >= t
				rows[i].Meets = &meets
			}
			continue
		}
		if rows[i].Target != nil {
			ok := rows[i].Ratio >= *rows[i].Target
			rows[i].Meets = &ok
		}
	}
	return rows, nil
}

func verdict(r row) (target, status string) {
	if r.Target == nil {
		return "", ""
	}
	target = fmt.Sprintf("≥ %.2f", *r.Target)
	if r.TargetOf != "" {
		target = fmt.Sprintf("%.3f × %s, ≥ %.2f", r.RelRatio, r.TargetOf, *r.Target)
	}
	if *r.Meets {
		return target, "ok"
	}
	return target, "below"
}

func textTable(rows []row) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-12s %4s %8s %15s %7s %7s %6s %7s %7s %9s %7s %7s %7s %7s %s\n",
		"config", "runs", "req/s", "(min–max)", "p50 ms", "p99 ms", "errors", "ratio", "paired", "CPU µs/req", "CPU rt", "same", "same CPU", "target", "")
	for _, r := range rows {
		t, s := verdict(r)
		fmt.Fprintf(&b, "%-12s %4d %8.0f %15s %7.2f %7.2f %6d %7.3f %7.3f %9s %7s %7s %7s %7s %s\n",
			r.Config, r.Runs, r.RPSMedian, fmt.Sprintf("(%.0f–%.0f)", r.RPSMin, r.RPSMax),
			r.P50Ms, r.P99Ms, r.Errors, r.Ratio, r.PairedRatio, opt(r.CPUus, "%.1f"), opt(r.CPURatio, "%.3f"),
			opt(r.SameTraffic, "%.3f"), opt(r.SameTrafficCPU, "%.3f"), t, s)
	}
	return b.String()
}

func opt(v float64, format string) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

func markdown(rep report, metaKeys []string) string {
	var b strings.Builder
	for _, k := range metaKeys {
		fmt.Fprintf(&b, "- %s: %s\n", k, rep.Meta[k])
	}
	if len(metaKeys) > 0 {
		b.WriteString("\n")
	}
	b.WriteString("| config | what | runs | req/s (median) | min–max | p50 ms | p99 ms | errors | × baseline | paired × | Caddy CPU µs/req | CPU × | × same traffic | CPU × same traffic | target |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, r := range rep.Configs {
		t, s := verdict(r)
		if t != "" {
			t += " " + s
		}
		same := opt(r.SameTraffic, "%.3f")
		if r.SameTrafficOf != "" {
			same += " (" + r.SameTrafficOf + ")"
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %.0f | %.0f–%.0f | %.2f | %.2f | %d | **%.3f** | %.3f | %s | %s | %s | %s | %s |\n",
			r.Config, r.What, r.Runs, r.RPSMedian, r.RPSMin, r.RPSMax, r.P50Ms, r.P99Ms, r.Errors,
			r.Ratio, r.PairedRatio, opt(r.CPUus, "%.1f"), opt(r.CPURatio, "%.3f"), same, opt(r.SameTrafficCPU, "%.3f"), t)
	}
	return b.String()
}
