package agent

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// rootFormats says which roots this agent takes, for error messages.
const rootFormats = "a local directory, a local .tar or .tar.gz file, or an http(s) URL of one"

// roots resolves a container's root argument to a directory the
// container's overlay uses as its lower layer: a directory as it is, an
// archive unpacked once into the cache (by its SHA-256), a URL downloaded
// once (by URL, then by content).
type roots struct {
	dir string // <state>/roots
	mu  sync.Mutex
}

func (r *roots) resolve(ctx context.Context, root string) (string, error) {
	if root == "" {
		return "", badRequest("corex.create: root is required (%s)", rootFormats)
	}
	if strings.HasSuffix(strings.ToLower(strings.SplitN(root, "?", 2)[0]), ".flist") {
		return "", badRequest("corex.create: root %q is a Zero-OS flist, which this agent cannot mount; give %s", root, rootFormats)
	}
	u, err := url.Parse(root)
	if err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		path, err := r.download(ctx, root)
		if err != nil {
			return "", err
		}
		return r.unpack(path)
	}
	if err == nil && u.Scheme != "" && u.Scheme != "file" {
		return "", badRequest("corex.create: root %q: scheme %q is not supported; give %s", root, u.Scheme, rootFormats)
	}
	if err == nil && u.Scheme == "file" {
		root = u.Path
	}
	fi, err := os.Stat(root)
	if err != nil {
		return "", notFound("corex.create: root %q: %v (give %s)", root, errors.Unwrap(err), rootFormats)
	}
	if fi.IsDir() {
		return filepath.Abs(root)
	}
	return r.unpack(root)
}

// download fetches url into the cache once and returns the file.
func (r *roots) download(ctx context.Context, rawURL string) (string, error) {
	sum := sha256.Sum256([]byte(rawURL))
	dst := filepath.Join(r.dir, "downloads", hex.EncodeToString(sum[:]))
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return "", badRequest("corex.create: root %q: %v", rawURL, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", badRequest("corex.create: download root %q: %v", rawURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", notFound("corex.create: download root %q: the server answered %s", rawURL, resp.Status)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "partial-")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, resp.Body); err != nil {
		tmp.Close()
		return "", badRequest("corex.create: download root %q: %v", rawURL, err)
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return dst, os.Rename(tmp.Name(), dst)
}

// unpack extracts a .tar or .tar.gz into the cache once (keyed by its
// SHA-256) and returns the directory.
func (r *roots) unpack(archive string) (string, error) {
	f, err := os.Open(archive)
	if err != nil {
		return "", notFound("corex.create: root %q: %v", archive, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	dst := filepath.Join(r.dir, hex.EncodeToString(h.Sum(nil)))
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(r.dir, "unpacking-")
	if err != nil {
		return "", err
	}
	if err := untar(f, tmp); err != nil {
		os.RemoveAll(tmp)
		return "", badRequest("corex.create: root %q: %v", archive, err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return dst, nil
}

// untar extracts a tar stream (gzip-compressed or not) into dir, refusing
// entries that would land outside it and links that point outside it.
func untar(r io.Reader, dir string) error {
	br := bufio.NewReader(r)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return err
		}
		defer gz.Close()
		r = gz
	} else {
		r = br
	}
	tr := tar.NewReader(r)
	n := 0
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("not a tar archive: %v", err)
		}
		n++
		name := filepath.Clean("/" + hdr.Name)
		if hdr.Name == "" || strings.Contains("/"+hdr.Name+"/", "/../") {
			return fmt.Errorf("entry %q leaves the root", hdr.Name)
		}
		target := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(hdr.Mode).Perm()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, mode|0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			f.Close()
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			// A symlink is resolved inside the container's root, so an
			// absolute target stays inside; a relative one must too.
			if filepath.IsAbs(hdr.Linkname) {
				return fmt.Errorf("symlink %q points at the absolute path %q (outside the archive)", hdr.Name, hdr.Linkname)
			}
			if !inside(filepath.Dir(name) + "/" + hdr.Linkname) {
				return fmt.Errorf("symlink %q points at %q, outside the root", hdr.Name, hdr.Linkname)
			}
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return err
			}
		case tar.TypeLink:
			src := filepath.Clean("/" + hdr.Linkname)
			if strings.Contains("/"+hdr.Linkname+"/", "/../") {
				return fmt.Errorf("hard link %q points outside the root", hdr.Name)
			}
			if err := os.Link(filepath.Join(dir, src), target); err != nil {
				return err
			}
		default:
			// Devices, fifos: not needed in a root; the container gets its own /dev.
		}
	}
	if n == 0 {
		return errors.New("the archive is empty")
	}
	return nil
}

// inside reports whether a slash path, resolved from the root, stays in it.
func inside(p string) bool {
	depth := 0
	for _, part := range strings.Split(p, "/") {
		switch part {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return false
			}
		default:
			depth++
		}
	}
	return true
}
