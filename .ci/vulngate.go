//go:build ignore

// vulngate reads `govulncheck -format json` on stdin and decides: a
// vulnerability that the code calls (a symbol-level finding) in a module
// fails the run; one in the Go standard library fails it too, unless
// VULN_STDLIB=warn, because only a newer Go toolchain fixes those (see the
// README's Development section). Findings in code that is imported but not
// called are listed, never fatal.
//
//	go run golang.org/x/vuln/cmd/govulncheck@vX -format json ./... | go run .ci/vulngate.go
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
	Receiver string `json:"receiver"`
	Position *struct {
		Filename string `json:"filename"`
		Line     int    `json:"line"`
	} `json:"position"`
}

type message struct {
	OSV *struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"osv"`
	Finding *struct {
		OSV          string  `json:"osv"`
		FixedVersion string  `json:"fixed_version"`
		Trace        []frame `json:"trace"`
	} `json:"finding"`
}

type vuln struct {
	id, summary, module, found, fixed string
	called                            bool
	example                           string
}

func main() {
	dec := json.NewDecoder(os.Stdin)
	summaries := map[string]string{}
	vulns := map[string]*vuln{}
	for {
		var m message
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			fmt.Fprintln(os.Stderr, "vulngate: reading govulncheck output:", err)
			os.Exit(2)
		}
		if m.OSV != nil {
			summaries[m.OSV.ID] = m.OSV.Summary
		}
		if f := m.Finding; f != nil && len(f.Trace) > 0 {
			v := vulns[f.OSV]
			if v == nil {
				v = &vuln{id: f.OSV, module: f.Trace[0].Module, found: f.Trace[0].Version, fixed: f.FixedVersion}
				vulns[f.OSV] = v
			}
			if f.Trace[0].Function != "" && !v.called {
				v.called = true
				// The caller in this module: the last frame of the trace.
				last := f.Trace[len(f.Trace)-1]
				v.example = last.Package + "." + last.Function
				if last.Position != nil {
					v.example += fmt.Sprintf(" (%s:%d)", last.Position.Filename, last.Position.Line)
				}
			}
		}
	}
	ids := make([]string, 0, len(vulns))
	for id := range vulns {
		ids = append(ids, id)
	}
	sort.Strings(ids)

	stdlibWarn := os.Getenv("VULN_STDLIB") == "warn"
	fail := false
	var calledStdlib []string
	for _, id := range ids {
		v := vulns[id]
		state := "imported, not called"
		if v.called {
			state = "CALLED from " + v.example
		}
		fmt.Printf("%s  %s@%s (fixed in %s)  %s\n    %s\n", v.id, v.module, v.found, v.fixed, state, summaries[v.id])
		if !v.called {
			continue
		}
		if v.module == "stdlib" {
			calledStdlib = append(calledStdlib, v.id)
			if !stdlibWarn {
				fail = true
			}
		} else {
			fail = true
		}
	}
	if len(vulns) == 0 {
		fmt.Println("no known vulnerabilities")
	}
	if len(calledStdlib) > 0 {
		fmt.Printf("\nthe Go standard library of this toolchain has %d vulnerabilities the code reaches (%s): build with a fixed Go release\n",
			len(calledStdlib), strings.Join(calledStdlib, ", "))
		if stdlibWarn {
			fmt.Println("VULN_STDLIB=warn: reported, not failing")
		}
	}
	if fail {
		fmt.Println("\nvulngate: FAIL")
		os.Exit(1)
	}
}
