package boot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pin/tftp/v3"
)

// IPXEDirs are where Debian's packages put the iPXE binaries: ipxe
// (undionly.kpxe, ipxe.efi, snponly.efi) and, as a fallback, ipxe-qemu.
var IPXEDirs = []string{"/usr/lib/ipxe", "/usr/share/ipxe"}

// DefaultTFTPRoot is the first of IPXEDirs that exists ("" when none).
func DefaultTFTPRoot() string {
	for _, d := range IPXEDirs {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d
		}
	}
	return ""
}

// cleanName maps a requested name to a path inside root, refusing any
// that would leave it (.., absolute paths are taken as relative).
func cleanName(root, name string) (string, error) {
	name = strings.ReplaceAll(name, "\\", "/")
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("%q leaves the served directory", name)
		}
	}
	rel := strings.TrimPrefix(path.Clean("/"+name), "/")
	if rel == "" {
		return "", fmt.Errorf("%q names no file", name)
	}
	return filepath.Join(root, filepath.FromSlash(rel)), nil
}

// TFTP serves the files of one directory, read-only.
type TFTP struct {
	root string
	log  hclog.Logger
	srv  *tftp.Server
}

// NewTFTP serves root.
func NewTFTP(root string, log hclog.Logger) (*TFTP, error) {
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("TFTP root: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("TFTP root %s is not a directory", root)
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	t := &TFTP{root: root, log: log}
	t.srv = tftp.NewServer(t.read, func(name string, _ io.WriterTo) error {
		log.Warn("TFTP: refused a write", "file", name)
		return errors.New("this server is read-only")
	})
	t.srv.SetTimeout(5 * time.Second)
	return t, nil
}

func (t *TFTP) read(name string, rf io.ReaderFrom) error {
	p, err := cleanName(t.root, name)
	if err != nil {
		t.log.Warn("TFTP: refused", "file", name, "error", err)
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		t.log.Info("TFTP: not found", "file", name)
		return fmt.Errorf("%s: not found", name)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a file", name)
	}
	n, err := rf.ReadFrom(f)
	peer := ""
	if it, ok := rf.(tftp.OutgoingTransfer); ok {
		a := it.RemoteAddr()
		peer = a.String()
	}
	if err != nil {
		t.log.Warn("TFTP: transfer failed", "file", name, "peer", peer, "sent", n, "error", err)
		return err
	}
	t.log.Info("TFTP: sent", "file", name, "peer", peer, "bytes", n)
	return nil
}

// Serve answers on conn until Close.
func (t *TFTP) Serve(conn net.PacketConn) error { return t.srv.Serve(conn) }

// Close stops the server.
func (t *TFTP) Close() { t.srv.Shutdown() }

// Files is the HTTP handler for kernels and initrds: the files under one
// directory, with range requests; no directory listings.
func Files(dir string, log hclog.Logger) http.Handler {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	fsys := noDirs{http.Dir(dir)}
	files := http.FileServer(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed: files are read-only", http.StatusMethodNotAllowed)
			return
		}
		log.Debug("files: request", "path", r.URL.Path, "range", r.Header.Get("Range"), "peer", r.RemoteAddr)
		files.ServeHTTP(w, r)
	})
}

// noDirs hides directories, so no listing is ever served.
type noDirs struct{ fs http.FileSystem }

func (n noDirs) Open(name string) (http.File, error) {
	f, err := n.fs.Open(name)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		f.Close() //nolint:errcheck
		return nil, fs.ErrNotExist
	}
	return f, nil
}
