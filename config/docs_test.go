package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestEveryKeyIsDocumented keeps docs/configuration.md in step with the code: every
// key of File must appear there (in backquotes, as its full path or, for keys under a
// list or a map, as its path relative to the section).
func TestEveryKeyIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc)
	for _, key := range keyPaths(reflect.TypeOf(File{}), "") {
		short := key
		if i := strings.LastIndex(key, "[]."); i >= 0 {
			short = key[i+3:]
		}
		candidates := []string{key, strings.ReplaceAll(key, "[]", ""), short, "flavors[]." + short, "runner." + short}
		// Backend sections document their keys relative to "flavors[].<backend>".
		for _, sec := range []string{"flavors[].lxd.", "flavors[].openstack."} {
			if rel, ok := strings.CutPrefix(key, sec); ok {
				candidates = append(candidates, rel)
			}
		}
		found := false
		for _, c := range candidates {
			if strings.Contains(text, "`"+c+"`") || strings.Contains(text, "`"+c+",") || strings.Contains(text, ", `"+c+"`") {
				found = true
				break
			}
			// Keys documented together: `a.x`, `a.y` in one cell.
			if strings.Contains(text, "`"+c) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("config key %s is not documented in docs/configuration.md", key)
		}
	}
}

func keyPaths(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case isLeaf(ft):
			out = append(out, key)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, keyPaths(ft.Elem(), key+"[]")...)
		case ft.Kind() == reflect.Struct:
			out = append(out, keyPaths(ft, key)...)
		default:
			out = append(out, key)
		}
	}
	return out
}
