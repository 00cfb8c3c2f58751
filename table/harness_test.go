//go:build !harness

package table

import "testing"

// TestHarnessTag: this package's tests that drive its C code use its test harness,
// which builds only with the harness tag (so that homingd does not carry it): without
// the tag they are left out, and this test says so instead of passing.
func TestHarnessTag(t *testing.T) {
	t.Fatal("build with the harness tag: go test -tags harness ./table (make test passes it)")
}
