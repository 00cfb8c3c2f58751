package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/homing-dev/homing/internal/counters"
)

// exported is every series name a scrape of the collector has (histograms as _bucket,
// _sum and _count), from the registry itself: no list to keep by hand.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	snap := func() Snapshot {
		s := fakeSnapshot()
		s.Gossip.HeartbeatAge = map[uint16]float64{2: 0.1}
		s.Ports[0].Link, s.Ports[0].RxQueues, s.Ports[0].TxQueues = &Link{Up: true}, []counters.QueueRx{{}}, []counters.QueueTx{{}}
		return s
	}
	fams, err := New(SourceFunc(snap), Info{HostID: 1}).Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		n := f.GetName()
		names[n] = true
		if f.GetType() == dto.MetricType_HISTOGRAM {
			names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
		}
	}
	return names
}

// metricRE finds the metric names of homing's, the Go runtime's and the process's in a
// PromQL expression.
var metricRE = regexp.MustCompile(`\b(?:homing|go|process)_[a-zA-Z0-9_]+`)

func unknownNames(known map[string]bool, exprs []string) []string {
	seen := map[string]bool{}
	var bad []string
	for _, e := range exprs {
		for _, n := range metricRE.FindAllString(e, -1) {
			if !known[n] && !seen[n] {
				seen[n] = true
				bad = append(bad, n)
			}
		}
	}
	sort.Strings(bad)
	return bad
}

// TestGrafanaDashboard: deploy/grafana/homing.json is valid JSON of a dashboard whose
// every query names metrics the collector exports.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("../deploy/grafana/homing.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("homing.json: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("not a dashboard: title %q, uid %q, %d panels", dash.Title, dash.UID, len(dash.Panels))
	}
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if q.Expr == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
			exprs = append(exprs, q.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	if bad := unknownNames(exported(t), exprs); len(bad) > 0 {
		t.Errorf("the dashboard queries metrics the collector does not export: %v", bad)
	}
}

// TestRulesNames: the alerting rules name only metrics the collector exports (promtool
// test rules checks their logic on made-up series, not the names).
func TestRulesNames(t *testing.T) {
	b, err := os.ReadFile("../deploy/prometheus/homing.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, m := range regexp.MustCompile(`(?m)^\s+expr: (.*)$`).FindAllStringSubmatch(string(b), -1) {
		exprs = append(exprs, m[1])
	}
	if len(exprs) < 10 {
		t.Fatalf("%d expressions in homing.rules.yml", len(exprs))
	}
	if bad := unknownNames(exported(t), exprs); len(bad) > 0 {
		t.Errorf("homing.rules.yml names metrics the collector does not export: %v", bad)
	}
}
