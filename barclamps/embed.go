// Package barclamps holds the first-party barclamps (each a wasip1 main
// package in a subdirectory) and embeds their built modules, which
// `make` writes to dist/, so the server needs no extra files.
package barclamps

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io"
	"io/fs"
	"strings"
	"sync"
)

//go:embed all:dist
var dist embed.FS

// Embedded returns the built first-party modules by file name without
// ".wasm". It is empty when the server was built without `make`.
func Embedded() (map[string][]byte, error) {
	names, err := Names()
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(names))
	for _, n := range names {
		if out[n], err = dist.ReadFile("dist/" + n + ".wasm"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Names lists the embedded modules' names without reading them (Embedded
// copies every module: tens of milliseconds a server need not spend before
// it listens).
func Names() ([]string, error) {
	entries, err := fs.ReadDir(dist, "dist")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".wasm"); ok {
			names = append(names, n)
		}
	}
	return names, nil
}

// Trusted returns the digests (barclamp.Digest: hex SHA-256; this package
// builds for wasip1 too, so it does not import core/barclamp) of the
// embedded modules:
// first-party code, which the server runs without wazero's loop guard
// (plugins.Config.Trusted). Only these exact bytes are trusted; any other
// module, whatever its name, keeps the guard.
//
// The modules are hashed straight from the binary, not through Embedded:
// copying ~18 MB out of the embedded files cost a server 50-100 ms before
// it could listen.
var Trusted = sync.OnceValue(func() map[string]bool {
	out := map[string]bool{}
	names, _ := Names()
	for _, n := range names {
		f, err := dist.Open("dist/" + n + ".wasm")
		if err != nil {
			continue
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close() //nolint:errcheck // an embedded file
		if err == nil {
			out[hex.EncodeToString(h.Sum(nil))] = true
		}
	}
	return out
})
