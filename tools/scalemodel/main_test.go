package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestDocMatches: docs/SCALING.md's model section is this program's output, so that a
// change of a measured figure or of the model shows in the doc (go run
// ./tools/scalemodel -w rewrites it).
func TestDocMatches(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", docPath))
	if err != nil {
		t.Fatal(err)
	}
	want, err := splice(string(doc), render())
	if err != nil {
		t.Fatal(err)
	}
	if string(doc) != want {
		t.Fatalf("%s: the model's section is not the output of tools/scalemodel: run go run ./tools/scalemodel -w", docPath)
	}
}
