package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// fileKeys walks the toml tags of the file structs: every key a file may set, dotted,
// with "[]" after arrays of tables ("peers[].id").
func fileKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct:
			keys = append(keys, fileKeys(ft, prefix+tag+".")...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, fileKeys(ft.Elem(), prefix+tag+"[].")...)
		default:
			keys = append(keys, prefix+tag)
		}
	}
	return keys
}

// docKeys returns the keys in the first column of docs/CONFIG.md's tables.
func docKeys(t *testing.T) []string {
	b, err := os.ReadFile("../docs/CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?m)^\\| `([a-z0-9_.\\[\\]]+)` \\|")
	var keys []string
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		keys = append(keys, m[1])
	}
	return keys
}

func TestDocsListEveryKey(t *testing.T) {
	code := fileKeys(reflect.TypeOf(fileConfig{}), "")
	doc := docKeys(t)
	if len(code) < 60 {
		t.Fatalf("only %d keys found by reflection: %v", len(code), code)
	}
	for _, k := range code {
		if !slices.Contains(doc, k) {
			t.Errorf("docs/CONFIG.md does not document %s", k)
		}
	}
	seen := map[string]bool{}
	for _, k := range doc {
		if seen[k] {
			t.Errorf("docs/CONFIG.md documents %s twice", k)
		}
		seen[k] = true
		// An array of tables ("kernel.routes") is documented with its elements' keys.
		isArray := slices.ContainsFunc(code, func(c string) bool { return strings.HasPrefix(c, k+"[].") })
		if !slices.Contains(code, k) && !isArray {
			t.Errorf("docs/CONFIG.md documents %s, which config does not accept", k)
		}
	}
}

// TestDocumentedKeysParse writes every documented leaf key into a file and checks that
// none of them is refused as unknown: the docs name keys the decoder really takes.
func TestDocumentedKeysParse(t *testing.T) {
	c := mustParse(t, minimal)
	if c == nil {
		return
	}
	for _, k := range fileKeys(reflect.TypeOf(fileConfig{}), "") {
		if strings.Contains(k, "[]") {
			continue
		}
		table, key, _ := strings.Cut(k, ".")
		_, err := Parse([]byte("["+table+"]\n"+key+" = 1\n"), "k.toml")
		for _, p := range Problems(err) {
			if p.Kind == ErrUnknownKey {
				t.Errorf("%s: %v", k, p)
			}
		}
	}
}
