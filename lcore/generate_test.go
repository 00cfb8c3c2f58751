package lcore

import (
	"bytes"
	"os"
	"testing"
)

// TestTableHeaderCurrent: lcore's copy of the table's header is the table's header
// (run go generate ./lcore, or make generate, after changing table/homing_table.h).
func TestTableHeaderCurrent(t *testing.T) {
	want, err := os.ReadFile("../table/homing_table.h")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("homing_table.h")
	if err != nil {
		t.Fatal(err)
	}
	banner, body, ok := bytes.Cut(got, []byte("\n"))
	if !ok || !bytes.Contains(banner, []byte("DO NOT EDIT")) || !bytes.Equal(body, want) {
		t.Fatal("lcore/homing_table.h is not table/homing_table.h: run go generate ./lcore (make generate)")
	}
}
