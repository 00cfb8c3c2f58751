package metrics

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// series gathers what a collector fed with s exports of homing_*: series → value.
func gatherSeries(t *testing.T, s Snapshot) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry() // also checks every metric against Describe
	if err := reg.Register(&collector{src: SourceFunc(func() Snapshot { return s })}); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			var l []string
			for _, lp := range m.GetLabel() {
				l = append(l, lp.GetName()+"="+lp.GetValue())
			}
			v := m.GetGauge().GetValue()
			if m.Counter != nil {
				v = m.Counter.GetValue()
			}
			out[f.GetName()+"{"+strings.Join(l, ",")+"}"] = v
		}
	}
	return out
}

// TestGroupsExportEveryField: every counter of every counter struct (gossip.Stats,
// lcore.Stats, ...) changes a series of its struct's families when it alone is set:
// a field cannot be left out of /metrics (NewGroup refuses a field without a metric
// tag; this checks that the tag leads somewhere). daemon's TestStatsViewHasEveryField
// checks homingctl stats alike.
func TestGroupsExportEveryField(t *testing.T) {
	total := 0
	for _, g := range Groups() {
		base := gatherSeries(t, Snapshot{}.With(g.Zero(g.Fields()[0], 0)))
		for _, f := range g.Fields() {
			total++
			got := gatherSeries(t, Snapshot{}.With(g.Zero(f, 1)))
			changed := false
			for k, v := range got {
				if base[k] != v && strings.HasPrefix(k, Namespace+"_"+g.sub+"_") {
					changed = true
				}
			}
			if !changed {
				t.Errorf("%s.%s is not exported: no series of homing_%s_* changes with it", g.Type(), f, g.sub)
			}
			view := g.View(g.Zero(f, 1))
			nonzero := false
			for _, v := range view {
				nonzero = nonzero || v != 0
			}
			if !nonzero {
				t.Errorf("%s.%s is not in the homingctl view", g.Type(), f)
			}
		}
	}
	if total < 100 {
		t.Errorf("%d counters in all groups", total)
	}
}

// TestEveryStatsStructHasGroup: every struct type of the module named *Stats, or with
// a metric tag, is one of Groups (ctl's views aside): a new counter struct cannot be
// forgotten by the collector either.
func TestEveryStatsStructHasGroup(t *testing.T) {
	have := map[string]bool{}
	for _, g := range Groups() {
		have[g.Type().PkgPath()+"."+g.Type().Name()] = true
	}
	const module = "github.com/homing-dev/homing"
	found := 0
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == "testdata" || strings.HasPrefix(n, ".") && n != ".." || path == "../ctl" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		pkg := module + strings.TrimPrefix(filepath.ToSlash(filepath.Dir(path)), "..")
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok {
				continue
			}
			for _, spec := range gd.Specs {
				ts, ok := spec.(*ast.TypeSpec)
				if !ok || ts.Assign != 0 {
					continue
				}
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				tagged := false
				for _, fl := range st.Fields.List {
					if fl.Tag != nil && strings.Contains(reflect.StructTag(strings.Trim(fl.Tag.Value, "`")).Get("metric"), "_") {
						tagged = true
					}
				}
				if !tagged && !strings.HasSuffix(ts.Name.Name, "Stats") {
					continue
				}
				found++
				if !have[pkg+"."+ts.Name.Name] {
					t.Errorf("%s: %s.%s holds counters but is not in metrics.Groups", path, pkg, ts.Name.Name)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found < len(Groups()) {
		t.Errorf("found %d counter structs, %d groups", found, len(Groups()))
	}
}

// TestGroupTags: NewGroup refuses mis-declared counters.
func TestGroupTags(t *testing.T) {
	type noTag struct {
		A uint64 `metric:"a_total" help:"A."`
		B uint64
	}
	type noHelp struct {
		A uint64 `metric:"a_total"`
	}
	type twoHelps struct {
		A uint64 `metric:"a_total{k=x}" help:"A."`
		B uint64 `metric:"a_total{k=y}" help:"B."`
	}
	type labels struct {
		A uint64 `metric:"a_total{k=x}" help:"A."`
		B uint64 `metric:"a_total{j=y}"`
	}
	type syntax struct {
		A uint64 `metric:"a_total{k=x" help:"A."`
	}
	type notCounter struct {
		A int `metric:"a_total" help:"A."`
	}
	for _, c := range []struct {
		proto any
		want  string
	}{
		{noTag{}, "noTag.B: no metric tag"},
		{noHelp{}, "homing_x_a_total has no help"},
		{twoHelps{}, "twoHelps.B: a_total has a help text already"},
		{labels{}, "labels.B: a_total: labels [j]"},
		{syntax{}, `syntax.A: metric "a_total{k=x"`},
		{notCounter{}, "notCounter.A: a counter is a uint64"},
	} {
		func() {
			defer func() {
				if r, _ := recover().(string); !strings.Contains(r, c.want) {
					t.Errorf("NewGroup(%T): panic %q, want %q", c.proto, r, c.want)
				}
			}()
			NewGroup("x", c.proto)
		}()
	}
}

// TestGroupSums: fields naming one series add up, '-' subtracts, label fields and
// extra labels label every series, and the view follows the ctl tags.
func TestGroupSums(t *testing.T) {
	type s struct {
		ID   uint16 `label:"id"`
		All  uint64 `metric:"in_total{proto=tcp}" ctl:"tcp" help:"In."`
		UDP  uint64 `metric:"in_total{proto=udp} -in_total{proto=tcp}" ctl:"udp -tcp"`
		More uint64 `metric:"other in_total{proto=udp}" help:"Other."`
		Gone uint64 `metric:"gone_total" help:"Gone."`
	}
	g := NewGroup("x", s{}, "port")
	c := groupCollector{g, &s{ID: 7, All: 10, UDP: 3, More: 1, Gone: 2}, []string{"nic"}}
	want := `
# HELP homing_x_gone_total Gone.
# TYPE homing_x_gone_total counter
homing_x_gone_total{id="7",port="nic"} 2
# HELP homing_x_in_total In.
# TYPE homing_x_in_total counter
homing_x_in_total{id="7",port="nic",proto="tcp"} 7
homing_x_in_total{id="7",port="nic",proto="udp"} 4
# HELP homing_x_other Other.
# TYPE homing_x_other gauge
homing_x_other{id="7",port="nic"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	v := g.View(s{All: 10, UDP: 3, More: 1, Gone: 2})
	wantView := map[string]uint64{"tcp": 7, "udp": 3, "more": 1, "gone": 2}
	if !reflect.DeepEqual(v, wantView) {
		t.Errorf("view %v, want %v", v, wantView)
	}
	if f := g.Fields(); !reflect.DeepEqual(f, []string{"All", "UDP", "More", "Gone"}) {
		t.Errorf("fields %v", f)
	}
}

type groupCollector struct {
	g     *Group
	v     any
	extra []string
}

func (c groupCollector) Describe(ch chan<- *prometheus.Desc) { c.g.Describe(ch) }
func (c groupCollector) Collect(ch chan<- prometheus.Metric) { c.g.Collect(ch, c.v, c.extra...) }

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{"RepairServeErrors": "repair_serve_errors", "IDConflicts": "id_conflicts",
		"RxNIC": "rx_nic", "ICMPTooBig": "icmp_too_big", "QueueLen": "queue_len", "NacksSent": "nacks_sent"} {
		if got := snake(in); got != want {
			t.Errorf("snake(%s) = %s, want %s", in, got, want)
		}
	}
}
