// Command promql-check validates what this project hands to Prometheus and Grafana with
// Prometheus's own code: rule files as `promtool check rules` reads them (model/rulefmt, which
// also parses every expr), and every "expr" of a Grafana dashboard with the PromQL parser, after
// Grafana's variables are replaced by values of the right type. `go install` of promtool itself
// is refused (Prometheus's go.mod has exclude directives), so this builds only what it needs.
//
// Usage: go run . <rules.yaml|dashboard.json>...   (exit 1 on the first file with an error)
package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

var (
	promql = parser.NewParser(parser.Options{})
	// Grafana's range variables become a duration, any other variable a label value.
	rangeVar = regexp.MustCompile(`\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}`)
	otherVar = regexp.MustCompile(`\$\{?\w+\}?`)
)

func main() {
	failed := false
	for _, path := range os.Args[1:] {
		var n int
		var errs []error
		if strings.HasSuffix(path, ".json") {
			n, errs = checkDashboard(path)
		} else {
			n, errs = checkRules(path)
		}
		for _, err := range errs {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			failed = true
		}
		if len(errs) == 0 {
			fmt.Printf("%s: %d expressions parse\n", path, n)
		}
	}
	if failed || len(os.Args) < 2 {
		os.Exit(1)
	}
}

func checkRules(path string) (int, []error) {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	groups, errs := rulefmt.ParseFile(path, false, model.UTF8Validation, promql, logger)
	if len(errs) > 0 {
		return 0, errs
	}
	n := 0
	for _, g := range groups.Groups {
		n += len(g.Rules)
	}
	if n == 0 {
		return 0, []error{fmt.Errorf("no rules")}
	}
	return n, nil
}

func checkDashboard(path string) (int, []error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, []error{err}
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return 0, []error{err}
	}
	var exprs []string
	collect(doc, &exprs)
	if len(exprs) == 0 {
		return 0, []error{fmt.Errorf("no expr in the dashboard")}
	}
	var errs []error
	for _, e := range exprs {
		q := rangeVar.ReplaceAllString(e, "5m")
		q = otherVar.ReplaceAllString(q, "x")
		if _, err := promql.ParseExpr(q); err != nil {
			errs = append(errs, fmt.Errorf("%q: %w", e, err))
		}
	}
	return len(exprs), errs
}

// collect gathers every string under a key "expr" (panel targets) or "query" of a Prometheus
// variable (label_values(...) is Grafana's, not PromQL, and is skipped).
func collect(v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if s, ok := val.(string); ok && k == "expr" && s != "" {
				*out = append(*out, s)
			} else {
				collect(val, out)
			}
		}
	case []any:
		for _, val := range x {
			collect(val, out)
		}
	}
}
