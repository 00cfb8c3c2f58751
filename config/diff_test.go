package config

import (
	"net"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// changeField sets v (a leaf field of a Config) to another value of its type.
func changeField(t *testing.T, name string, v reflect.Value) {
	t.Helper()
	switch {
	case v.Type() == reflect.TypeOf(netip.Addr{}):
		v.Set(reflect.ValueOf(netip.MustParseAddr("192.0.2.99")))
	case v.Type() == reflect.TypeOf(net.HardwareAddr{}):
		v.Set(reflect.ValueOf(net.HardwareAddr{2, 0, 0, 0, 0, 0x99}))
	case v.Kind() == reflect.Bool:
		v.SetBool(!v.Bool())
	case v.Kind() == reflect.String:
		v.SetString(v.String() + "x")
	case v.CanInt():
		v.SetInt(v.Int() + 1)
	case v.CanUint():
		v.SetUint(v.Uint() + 1)
	case v.Kind() == reflect.Slice:
		v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
	default:
		t.Fatalf("%s: no way to change a %v", name, v.Type())
	}
}

// TestDiffCoversEveryField changes every field of a Config in turn: Diff must name
// exactly one key for each, a different key each time, and a key of docs/CONFIG.md
// (a refusal to reload names keys an operator can find).
func TestDiffCoversEveryField(t *testing.T) {
	b, err := os.ReadFile("../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	var doc []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_.\\[\\]]+)` \\|").FindAllStringSubmatch(string(b), -1) {
		doc = append(doc, m[1])
	}
	base := Default()
	seen := map[string]string{}
	check := func(field string, mod func(c *Config)) {
		c := *base
		mod(&c)
		keys := Diff(base, &c)
		if len(keys) != 1 {
			t.Errorf("%s changed: Diff names %v, want one key", field, keys)
			return
		}
		k := keys[0]
		if other, ok := seen[k]; ok {
			t.Errorf("%s and %s are both %s", field, other, k)
		}
		seen[k] = field
		if !slices.Contains(doc, k) && !slices.ContainsFunc(doc, func(d string) bool { return strings.HasPrefix(d, k+"[].") }) {
			t.Errorf("%s (%s) is not in docs/CONFIG.md", k, field)
		}
	}
	ct := reflect.TypeOf(Config{})
	for i := range ct.NumField() {
		f := ct.Field(i)
		if f.Name == "Source" {
			continue
		}
		if f.Type.Kind() != reflect.Struct {
			check(f.Name, func(c *Config) { changeField(t, f.Name, reflect.ValueOf(c).Elem().Field(i)) })
			continue
		}
		for j := range f.Type.NumField() {
			name := f.Name + "." + f.Type.Field(j).Name
			check(name, func(c *Config) { changeField(t, name, reflect.ValueOf(c).Elem().Field(i).Field(j)) })
		}
	}
	if len(seen) < 50 {
		t.Fatalf("only %d keys", len(seen))
	}
	c := *base
	c.Source = "other.toml"
	if keys := Diff(base, &c); len(keys) != 0 {
		t.Errorf("Source named: %v", keys)
	}
}
