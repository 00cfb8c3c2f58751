package counters

import (
	"reflect"
	"strings"
	"testing"
)

// cstats stands for a cgo struct (the cgo packages' own tests copy their real ones).
type cstats struct {
	rx_nic  uint64
	_       [8]byte
	drop_tx uint64
}

func TestFromC(t *testing.T) {
	type good struct {
		ID   uint   `label:"id"`
		Drop uint64 `c:"drop_tx"`
		Rx   uint64 `c:"rx_nic"`
	}
	p := NewFromC(reflect.TypeFor[cstats](), reflect.TypeFor[good]())
	g := good{ID: 3}
	p.Copy(&g, cstats{rx_nic: 5, drop_tx: 7})
	if g != (good{ID: 3, Drop: 7, Rx: 5}) {
		t.Errorf("copy: %+v", g)
	}

	type missingGo struct {
		Rx uint64 `c:"rx_nic"`
	}
	type missingC struct {
		Rx   uint64 `c:"rx_nic"`
		Drop uint64 `c:"drop_tx"`
		More uint64 `c:"more"`
	}
	type twice struct {
		Rx   uint64 `c:"rx_nic"`
		Rx2  uint64 `c:"rx_nic"`
		Drop uint64 `c:"drop_tx"`
	}
	for _, c := range []struct {
		g    reflect.Type
		want string
	}{
		{reflect.TypeFor[missingGo](), "C counter counters.cstats.drop_tx has no field"},
		{reflect.TypeFor[missingC](), `missingC.More: c tag "more" names no (other) field`},
		{reflect.TypeFor[twice](), `twice.Rx2: c tag "rx_nic" names no (other) field`},
	} {
		func() {
			defer func() {
				if r, _ := recover().(string); !strings.Contains(r, c.want) {
					t.Errorf("NewFromC(%s): panic %q, want %q", c.g, r, c.want)
				}
			}()
			NewFromC(reflect.TypeFor[cstats](), c.g)
		}()
	}
}

// TestAdd: Lcore.Add sums every counter and keeps the receiver's lcore.
func TestAdd(t *testing.T) {
	a, b := Lcore{Lcore: 1, RxNIC: 2, MSSClamped: 3}, Lcore{Lcore: 9, RxNIC: 5, ParkUDPFull: 1}
	if s := a.Add(b); s != (Lcore{Lcore: 1, RxNIC: 7, MSSClamped: 3, ParkUDPFull: 1}) {
		t.Errorf("%+v", s)
	}
}
