// Package ui is crowbar's web UI: a page and a few static files, embedded
// in the binary, that drive the same /api/v2 routes as every other client
// with a session cookie (see docs/ui.md). Nothing here reads data: the
// files are the same for everyone and need no credentials.
package ui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
)

//go:embed assets
var assets embed.FS

// file is one asset as served: its bytes, gzipped bytes and validator.
type file struct {
	body, gz    []byte
	contentType string
	etag        string
}

var files = load()

func load() map[string]*file {
	out := map[string]*file{}
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		zw.Write(body) //nolint:errcheck // a bytes.Buffer does not fail
		zw.Close()     //nolint:errcheck
		sum := sha256.Sum256(body)
		ct := mime.TypeByExtension(path.Ext(p))
		if ct == "" {
			ct = "application/octet-stream"
		}
		out[strings.TrimPrefix(p, "assets/")] = &file{body: body, gz: gz.Bytes(), contentType: ct,
			etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic("ui: embedded assets: " + err.Error())
	}
	return out
}

// Paths are the URL paths the UI serves: "/" (the page) and /ui/<file>.
func Paths() []string {
	ps := []string{"/"}
	for name := range files {
		if name != "index.html" {
			ps = append(ps, "/ui/"+name)
		}
	}
	return ps
}

// Has reports whether p is one of Paths.
func Has(p string) bool {
	if p == "/" {
		return true
	}
	name, ok := strings.CutPrefix(p, "/ui/")
	return ok && name != "index.html" && files[name] != nil
}

// Size is the embedded files' total size, raw and gzipped.
func Size() (raw, compressed int) {
	for _, f := range files {
		raw += len(f.body)
		compressed += len(f.gz)
	}
	return raw, compressed
}

// contentSecurityPolicy allows nothing but this server: no inline script,
// no other origin, no framing.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"

// Handler serves Paths; the router sends only those here.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := "index.html"
		if r.URL.Path != "/" {
			name = strings.TrimPrefix(r.URL.Path, "/ui/")
		}
		f := files[name]
		if f == nil || name == "index.html" && r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.contentType)
		h.Set("ETag", f.etag)
		h.Set("Vary", "Accept-Encoding")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		// The page is revalidated each time (cheap: an ETag); the files it
		// names are too, since their names do not change between releases.
		h.Set("Cache-Control", "no-cache")
		if match := r.Header.Get("If-None-Match"); match != "" && match == f.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		body := f.body
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			h.Set("Content-Encoding", "gzip")
			body = f.gz
		}
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			w.Write(body) //nolint:errcheck // the client went away
		}
	})
}
