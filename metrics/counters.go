package metrics

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/homing-dev/homing/gossip"
	"github.com/homing-dev/homing/internal/counters"
	"github.com/homing-dev/homing/probe"
)

// Counters are declared once, on the struct that holds them (gossip.Stats,
// lcore.Stats, ...), by field tags; a Group reads the tags once, when it is made, and
// from them exports the Prometheus families and the homingctl stats view. Adding a
// counter is adding a field with its tags.
//
//	Sent    uint64 `metric:"sent_total" help:"Things sent."`                   // homing_<sub>_sent_total
//	Refused uint64 `metric:"dropped_total{reason=refused}" help:"Drops by reason."`
//	Late    uint64 `metric:"late_total dropped_total{reason=late}" help:"Late."` // two families
//	Lcore   uint   `label:"lcore"`                                              // a label of every series
//
// metric: the series the field counts in, space-separated: a family name (without
// namespace and subsystem) and optional constant labels in braces. A family whose name
// ends in _total is a counter, any other a gauge. Fields that name the same series add
// up; a leading '-' subtracts the field (a counter that its parent counter includes,
// such as the UDP share of the parked packets). Every uint64 field must have one.
//
// help: the help text of the field's first family. Each family has exactly one help,
// on any of its fields.
//
// ctl: the field's keys in homingctl stats, space-separated, '-' subtracts as above;
// default: the field's name in snake case. A key with a '/' ("classes/redirect") goes
// to a by-name map of homingctl stats (daemon/ctlserver.go, statsView).
//
// c (internal/counters only): the C field the cgo package copies it from (FromC).
//
// label: a field (uint or string) whose value labels every series of the struct.
//
// NewGroup panics on a malformed tag, a uint64 field without a metric tag, a family with no
// help or two, or with different label names in two fields: a program with a
// mis-declared counter does not start, and the tests that make every Group fail.
type Group struct {
	typ      reflect.Type
	sub      string
	labels   []string // the label fields' names, then the extra labels Collect gets
	labelIdx []int    // indexes of the label fields
	fams     []*family
	series   []*series
	fields   []counterField
	ctlKeys  []string
}

type family struct {
	name   string // full name: homing_<sub>_<name>
	help   string
	labels []string // the constant labels' names, after the group's labels
	vt     prometheus.ValueType
	desc   *prometheus.Desc
}

type series struct {
	fam    *family
	values []string // the constant labels' values
}

type term struct {
	i   int // series index, or ctl key index
	neg bool
}

type counterField struct {
	name   string
	idx    int
	series []term
	ctl    []term
}

var seriesRE = regexp.MustCompile(`^(-?)([a-z][a-z0-9_]*)(?:\{([a-z_]+=[a-z0-9_]+(?:,[a-z_]+=[a-z0-9_]+)*)\})?$`)

// NewGroup reads the tags of proto's struct type (proto is a value or a pointer). sub is
// the families' subsystem (lcore, gossip, ...); extra are labels whose values Collect
// gets (after the label fields'), such as a port's name.
func NewGroup(sub string, proto any, extra ...string) *Group {
	t := reflect.TypeOf(proto)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	g := &Group{typ: t, sub: sub}
	fail := func(f string, format string, a ...any) {
		panic(fmt.Sprintf("metrics: %s.%s: %s", t, f, fmt.Sprintf(format, a...)))
	}
	fams := map[string]*family{}
	seriesIdx := map[string]int{}
	ctlIdx := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if l, ok := f.Tag.Lookup("label"); ok {
			switch f.Type.Kind() {
			case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.String:
			default:
				fail(f.Name, "a label field must be an unsigned integer or a string")
			}
			g.labels = append(g.labels, l)
			g.labelIdx = append(g.labelIdx, i)
			continue
		}
		if f.Type.Kind() != reflect.Uint64 {
			fail(f.Name, "a counter is a uint64 (or tag it label)")
		}
		tag, ok := f.Tag.Lookup("metric")
		if !ok || strings.TrimSpace(tag) == "" {
			fail(f.Name, "no metric tag: every counter is exported (metrics/counters.go)")
		}
		cf := counterField{name: f.Name, idx: i}
		for n, s := range strings.Fields(tag) {
			m := seriesRE.FindStringSubmatch(s)
			if m == nil {
				fail(f.Name, "metric %q: want name or name{label=value,...}, optionally after a '-'", s)
			}
			var names, values []string
			if m[3] != "" {
				for _, kv := range strings.Split(m[3], ",") {
					k, v, _ := strings.Cut(kv, "=")
					names, values = append(names, k), append(values, v)
				}
			}
			fam := fams[m[2]]
			if fam == nil {
				fam = &family{name: prometheus.BuildFQName(Namespace, sub, m[2]), labels: names, vt: prometheus.GaugeValue}
				if strings.HasSuffix(m[2], "_total") {
					fam.vt = prometheus.CounterValue
				}
				fams[m[2]] = fam
				g.fams = append(g.fams, fam)
			} else if strings.Join(fam.labels, ",") != strings.Join(names, ",") {
				fail(f.Name, "%s: labels %v, other fields of the family have %v", m[2], names, fam.labels)
			}
			if n == 0 {
				if h := f.Tag.Get("help"); h != "" {
					if fam.help != "" {
						fail(f.Name, "%s has a help text already", m[2])
					}
					fam.help = h
				}
			}
			key := m[2] + "{" + m[3] + "}"
			si, ok := seriesIdx[key]
			if !ok {
				si = len(g.series)
				seriesIdx[key] = si
				g.series = append(g.series, &series{fam: fam, values: values})
			}
			cf.series = append(cf.series, term{si, m[1] == "-"})
		}
		ctlTag := f.Tag.Get("ctl")
		if ctlTag == "" {
			ctlTag = snake(f.Name)
		}
		for _, k := range strings.Fields(ctlTag) {
			neg := strings.HasPrefix(k, "-")
			k = strings.TrimPrefix(k, "-")
			ki, ok := ctlIdx[k]
			if !ok {
				ki = len(g.ctlKeys)
				ctlIdx[k] = ki
				g.ctlKeys = append(g.ctlKeys, k)
			}
			cf.ctl = append(cf.ctl, term{ki, neg})
		}
		g.fields = append(g.fields, cf)
	}
	g.labels = append(g.labels, extra...)
	for _, fam := range g.fams {
		if fam.help == "" {
			panic(fmt.Sprintf("metrics: %s: family %s has no help tag", t, fam.name))
		}
		fam.desc = prometheus.NewDesc(fam.name, fam.help, append(append([]string{}, g.labels...), fam.labels...), nil)
	}
	return g
}

// snake turns a Go name into snake case: RepairServeErrors → repair_serve_errors,
// IDConflicts → id_conflicts.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		upper := r >= 'A' && r <= 'Z'
		if upper && i > 0 {
			prevLower := s[i-1] >= 'a' && s[i-1] <= 'z' || s[i-1] >= '0' && s[i-1] <= '9'
			nextLower := i+1 < len(s) && s[i+1] >= 'a' && s[i+1] <= 'z'
			if prevLower || (nextLower && s[i-1] >= 'A' && s[i-1] <= 'Z') {
				b.WriteByte('_')
			}
		}
		if upper {
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Type is the struct type the group reads.
func (g *Group) Type() reflect.Type { return g.typ }

// Fields are the names of the struct's counter fields, in order.
func (g *Group) Fields() []string {
	out := make([]string, len(g.fields))
	for i, f := range g.fields {
		out[i] = f.name
	}
	return out
}

// Describe sends the group's descriptors.
func (g *Group) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range g.fams {
		ch <- f.desc
	}
}

// value returns the struct v (a value or a pointer of the group's type).
func (g *Group) value(v any) reflect.Value {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		rv = rv.Elem()
	}
	if rv.Type() != g.typ {
		panic(fmt.Sprintf("metrics: group of %s given a %s", g.typ, rv.Type()))
	}
	return rv
}

// sums adds up the fields into the terms' slots.
func sums(rv reflect.Value, fields []counterField, n int, terms func(*counterField) []term) []uint64 {
	out := make([]uint64, n)
	for i := range fields {
		f := &fields[i]
		x := rv.Field(f.idx).Uint()
		for _, t := range terms(f) {
			if t.neg {
				out[t.i] -= x
			} else {
				out[t.i] += x
			}
		}
	}
	return out
}

// Collect sends every series of v (the group's struct, or a pointer to it); extra are
// the values of the group's extra labels.
func (g *Group) Collect(ch chan<- prometheus.Metric, v any, extra ...string) {
	rv := g.value(v)
	labels := make([]string, 0, len(g.labels)+2)
	for _, i := range g.labelIdx {
		f := rv.Field(i)
		if f.Kind() == reflect.String {
			labels = append(labels, f.String())
		} else {
			labels = append(labels, strconv.FormatUint(f.Uint(), 10))
		}
	}
	labels = append(labels, extra...)
	vals := sums(rv, g.fields, len(g.series), func(f *counterField) []term { return f.series })
	for i, s := range g.series {
		ch <- prometheus.MustNewConstMetric(s.fam.desc, s.fam.vt, float64(vals[i]), append(labels[:len(labels):len(labels)], s.values...)...)
	}
}

// View is v's counters by homingctl key (ctl tags).
func (g *Group) View(v any) map[string]uint64 {
	vals := sums(g.value(v), g.fields, len(g.ctlKeys), func(f *counterField) []term { return f.ctl })
	out := make(map[string]uint64, len(vals))
	for i, k := range g.ctlKeys {
		out[k] = vals[i]
	}
	return out
}

// With returns s with v, a struct of one of Groups' types, in its place (the only
// lcore, the port "nic", the table, ...): for tests that go through every counter.
func (s Snapshot) With(v any) Snapshot {
	switch v := v.(type) {
	case counters.Lcore:
		s.Lcores = []counters.Lcore{v}
	case counters.Port:
		if len(s.Ports) == 0 {
			s.Ports = []Port{{Name: "nic"}}
		}
		s.Ports[0].Port = v
	case counters.Table:
		s.Table = &Table{Table: v}
	case gossip.Stats:
		s.Gossip = &Gossip{Stats: v}
	case gossip.RelayStats:
		s.Relay = &v
	case probe.Stats:
		s.Probe = &v
	case counters.UDP:
		s.UDP = &v
	case counters.UDPLearn:
		s.UDPLearn = &v
	case counters.QueueRx: // the nic port's queue, beside its counters
		if len(s.Ports) == 0 {
			s.Ports = []Port{{Name: "nic"}}
		}
		s.Ports[0].RxQueues = []counters.QueueRx{v}
	case counters.QueueTx:
		if len(s.Ports) == 0 {
			s.Ports = []Port{{Name: "nic"}}
		}
		s.Ports[0].TxQueues = []counters.QueueTx{v}
	default:
		panic(fmt.Sprintf("metrics: Snapshot has no place for a %T", v))
	}
	return s
}

// Zero returns a zero value of the group's struct with the named counter set to x.
func (g *Group) Zero(field string, x uint64) any {
	v := reflect.New(g.typ).Elem()
	v.FieldByName(field).SetUint(x)
	return v.Interface()
}
