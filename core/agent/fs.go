package agent

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// readBlock is how much one filesystem.read answers (the Python client
// uploads in blocks of the same size).
const readBlock = 512 << 10

// files holds the descriptors filesystem.open handed out; idle ones are
// closed after fileIdle.
type files struct {
	mu sync.Mutex
	m  map[string]*openFile
}

type openFile struct {
	f    *os.File
	used time.Time
}

const fileIdle = 10 * time.Minute

func newFiles() *files { return &files{m: map[string]*openFile{}} }

func (fs *files) put(f *os.File) string {
	var b [12]byte
	rand.Read(b[:]) //nolint:errcheck
	fd := hex.EncodeToString(b[:])
	fs.mu.Lock()
	fs.m[fd] = &openFile{f: f, used: time.Now()}
	fs.mu.Unlock()
	return fd
}

func (fs *files) get(fd string) (*os.File, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	of, ok := fs.m[fd]
	if !ok {
		return nil, notFound("no open file %q (closed, or idle for over %s)", fd, fileIdle)
	}
	of.used = time.Now()
	return of.f, nil
}

func (fs *files) close(fd string) error {
	fs.mu.Lock()
	of, ok := fs.m[fd]
	delete(fs.m, fd)
	fs.mu.Unlock()
	if !ok {
		return notFound("no open file %q", fd)
	}
	return of.f.Close()
}

// sweep closes descriptors idle for longer than fileIdle.
func (fs *files) sweep(now time.Time) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for fd, of := range fs.m {
		if now.Sub(of.used) > fileIdle {
			of.f.Close() //nolint:errcheck
			delete(fs.m, fd)
		}
	}
}

var openModes = map[string]int{
	"r": os.O_RDONLY,
	"w": os.O_WRONLY | os.O_CREATE | os.O_TRUNC,
	"+": os.O_RDWR | os.O_CREATE,
	"x": os.O_WRONLY | os.O_CREATE | os.O_EXCL,
	"a": os.O_WRONLY | os.O_CREATE | os.O_APPEND,
}

type pathArgs struct {
	Path        string `json:"path"`
	Destination string `json:"destination"`
	Mode        *int   `json:"mode"`
	User        string `json:"user"`
	Group       string `json:"group"`
	Recursive   bool   `json:"recursive"`
}

func pathArg(j *job) (pathArgs, error) {
	var a pathArgs
	if err := args(j, &a); err != nil {
		return a, err
	}
	if a.Path == "" {
		return a, badRequest("%s: path is required", j.cmd.Command)
	}
	return a, nil
}

// fsError turns an OS error into a result code: missing 404, else 400.
func fsError(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return notFound("%v", err)
	}
	var ce *cmdError
	if errors.As(err, &ce) {
		return err
	}
	return badRequest("%v", err)
}

var fsCommands = map[string]handler{
	"filesystem.open": func(_ context.Context, j *job) (output, error) {
		var a struct {
			File string `json:"file"`
			Mode string `json:"mode"`
			Perm *int   `json:"perm"`
		}
		if err := args(j, &a); err != nil {
			return output{}, err
		}
		if a.Mode == "" {
			a.Mode = "r"
		}
		flag, ok := openModes[a.Mode]
		if !ok {
			return output{}, badRequest("filesystem.open: mode %q: want r, w, +, x or a", a.Mode)
		}
		perm := 0o644
		if a.Perm != nil {
			perm = *a.Perm
		}
		if a.File == "" {
			return output{}, badRequest("filesystem.open: file is required")
		}
		f, err := os.OpenFile(a.File, flag, os.FileMode(perm))
		if err != nil {
			return output{}, fsError(err)
		}
		return jsonOut(j.a().files.put(f))
	},
	"filesystem.read": func(_ context.Context, j *job) (output, error) {
		var a struct {
			FD string `json:"fd"`
		}
		if err := args(j, &a); err != nil {
			return output{}, err
		}
		f, err := j.a().files.get(a.FD)
		if err != nil {
			return output{}, err
		}
		buf := make([]byte, readBlock)
		n, err := io.ReadFull(f, buf)
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return output{}, fsError(err)
		}
		return jsonOut(base64.StdEncoding.EncodeToString(buf[:n]))
	},
	"filesystem.write": func(_ context.Context, j *job) (output, error) {
		var a struct {
			FD    string `json:"fd"`
			Block string `json:"block"`
		}
		if err := args(j, &a); err != nil {
			return output{}, err
		}
		f, err := j.a().files.get(a.FD)
		if err != nil {
			return output{}, err
		}
		b, err := base64.StdEncoding.DecodeString(stripNewlines(a.Block))
		if err != nil {
			return output{}, badRequest("filesystem.write: block is not base64: %v", err)
		}
		if _, err := f.Write(b); err != nil {
			return output{}, fsError(err)
		}
		return jsonOut(len(b))
	},
	"filesystem.close": func(_ context.Context, j *job) (output, error) {
		var a struct {
			FD string `json:"fd"`
		}
		if err := args(j, &a); err != nil {
			return output{}, err
		}
		if err := j.a().files.close(a.FD); err != nil {
			return output{}, fsError(err)
		}
		return jsonOut(true)
	},
	"filesystem.exists": func(_ context.Context, j *job) (output, error) {
		a, err := pathArg(j)
		if err != nil {
			return output{}, err
		}
		_, err = os.Lstat(a.Path)
		return jsonOut(err == nil)
	},
	"filesystem.list": func(_ context.Context, j *job) (output, error) {
		a, err := pathArg(j)
		if err != nil {
			return output{}, err
		}
		entries, err := os.ReadDir(a.Path)
		if err != nil {
			return output{}, fsError(err)
		}
		type entry struct {
			Name  string `json:"name"`
			Size  int64  `json:"size"`
			IsDir bool   `json:"is_dir"`
			Mode  uint32 `json:"mode"`
		}
		out := []entry{}
		for _, e := range entries {
			info, err := e.Info()
			if err != nil {
				continue
			}
			out = append(out, entry{Name: e.Name(), Size: info.Size(), IsDir: e.IsDir(), Mode: uint32(info.Mode())})
		}
		return jsonOut(out)
	},
	"filesystem.mkdir": func(_ context.Context, j *job) (output, error) {
		a, err := pathArg(j)
		if err != nil {
			return output{}, err
		}
		if err := os.MkdirAll(a.Path, 0o755); err != nil {
			return output{}, fsError(err)
		}
		return jsonOut(true)
	},
	"filesystem.remove": func(_ context.Context, j *job) (output, error) {
		a, err := pathArg(j)
		if err != nil {
			return output{}, err
		}
		if filepath.Clean(a.Path) == "/" {
			return output{}, badRequest("filesystem.remove: refusing to remove /")
		}
		if err := os.RemoveAll(a.Path); err != nil {
			return output{}, fsError(err)
		}
		return jsonOut(true)
	},
	"filesystem.move": func(_ context.Context, j *job) (output, error) {
		a, err := pathArg(j)
		if err != nil {
			return output{}, err
		}
		if a.Destination == "" {
			return output{}, badRequest("filesystem.move: destination is required")
		}
		if err := os.Rename(a.Path, a.Destination); err != nil {
			return output{}, fsError(err)
		}
		return jsonOut(true)
	},
	"filesystem.chmod": func(_ context.Context, j *job) (output, error) {
		a, err := pathArg(j)
		if err != nil {
			return output{}, err
		}
		if a.Mode == nil {
			return output{}, badRequest("filesystem.chmod: mode is required")
		}
		mode := os.FileMode(*a.Mode)
		err = walk(a.Path, a.Recursive, func(p string) error { return os.Chmod(p, mode) })
		if err != nil {
			return output{}, fsError(err)
		}
		return jsonOut(true)
	},
	"filesystem.chown": func(_ context.Context, j *job) (output, error) {
		a, err := pathArg(j)
		if err != nil {
			return output{}, err
		}
		uid, gid := -1, -1
		if a.User != "" {
			if uid, err = lookupID(a.User, true); err != nil {
				return output{}, err
			}
		}
		if a.Group != "" {
			if gid, err = lookupID(a.Group, false); err != nil {
				return output{}, err
			}
		}
		err = walk(a.Path, a.Recursive, func(p string) error { return os.Lchown(p, uid, gid) })
		if err != nil {
			return output{}, fsError(err)
		}
		return jsonOut(true)
	},
}

func stripNewlines(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '\n' && s[i] != '\r' {
			b = append(b, s[i])
		}
	}
	return string(b)
}

// walk applies fn to path, and to everything under it when recursive.
func walk(path string, recursive bool, fn func(string) error) error {
	if !recursive {
		return fn(path)
	}
	return filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return fn(p)
	})
}

func lookupID(name string, isUser bool) (int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		return n, nil
	}
	if isUser {
		u, err := user.Lookup(name)
		if err != nil {
			return 0, notFound("filesystem.chown: no user %q", name)
		}
		return strconv.Atoi(u.Uid)
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, notFound("filesystem.chown: no group %q", name)
	}
	return strconv.Atoi(g.Gid)
}
