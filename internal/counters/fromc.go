package counters

import (
	"fmt"
	"reflect"
)

// FromC copies a cgo struct of uint64 counters (struct homing_lcore_stats, ...) into a
// counter struct of this package, each field from the C field its c tag names. Made
// once per pair of types: NewFromC panics unless every C counter has exactly one Go
// field and every Go counter one C field, so a counter added to the C struct cannot
// stay inside the process, and no copy is written by hand.
type FromC struct {
	ctype, gotype reflect.Type
	pairs         [][2]int // Go field index, C field index
}

// NewFromC returns the copy plan from cgo struct type c to counter struct type g.
func NewFromC(c, g reflect.Type) FromC {
	p := FromC{ctype: c, gotype: g}
	cidx := map[string]int{}
	for i := range c.NumField() {
		f := c.Field(i)
		if f.Name == "_" { // padding (__rte_cache_aligned)
			continue
		}
		if f.Type.Kind() != reflect.Uint64 {
			panic(fmt.Sprintf("counters: C field %s.%s is a %s, not a uint64_t counter", c, f.Name, f.Type))
		}
		cidx[f.Name] = i
	}
	used := map[string]bool{}
	for i := range g.NumField() {
		f := g.Field(i)
		if f.Type.Kind() != reflect.Uint64 {
			continue
		}
		name := f.Tag.Get("c")
		ci, ok := cidx[name]
		if !ok || used[name] {
			panic(fmt.Sprintf("counters: %s.%s: c tag %q names no (other) field of %s", g, f.Name, name, c))
		}
		used[name] = true
		p.pairs = append(p.pairs, [2]int{i, ci})
	}
	for name := range cidx {
		if !used[name] {
			panic(fmt.Sprintf("counters: C counter %s.%s has no field in %s (add it with its tags)", c, name, g))
		}
	}
	return p
}

// Copy sets each counter of *dst (of the Go type) from src (a value of the C type).
func (p FromC) Copy(dst any, src any) {
	d, s := reflect.ValueOf(dst).Elem(), reflect.ValueOf(src)
	if d.Type() != p.gotype || s.Type() != p.ctype {
		panic(fmt.Sprintf("counters: copy of %s from %s with a plan for %s from %s", d.Type(), s.Type(), p.gotype, p.ctype))
	}
	for _, ij := range p.pairs {
		d.Field(ij[0]).SetUint(s.Field(ij[1]).Uint())
	}
}
