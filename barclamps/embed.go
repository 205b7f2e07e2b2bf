// Package barclamps holds the first-party barclamps (each a wasip1 main
// package in a subdirectory) and embeds their built modules, which
// `make` writes to dist/, so the server needs no extra files.
package barclamps

import (
	"embed"
	"io/fs"
	"strings"
)

//go:embed all:dist
var dist embed.FS

// Embedded returns the built first-party modules by file name without
// ".wasm". It is empty when the server was built without `make`.
func Embedded() (map[string][]byte, error) {
	out := map[string][]byte{}
	entries, err := fs.ReadDir(dist, "dist")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".wasm") {
			continue
		}
		b, err := dist.ReadFile("dist/" + e.Name())
		if err != nil {
			return nil, err
		}
		out[strings.TrimSuffix(e.Name(), ".wasm")] = b
	}
	return out, nil
}
