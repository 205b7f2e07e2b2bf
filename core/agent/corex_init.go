package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// coreXEnv marks a process as a container's coreX (PID 1 of the
// container); its value is the coreXConfig as JSON.
const coreXEnv = "CROWBAR_COREX"

// coreXConfig is what the agent hands a container's PID 1.
type coreXConfig struct {
	ID        int               `json:"id"`
	Hostname  string            `json:"hostname"`
	Lower     string            `json:"lower"`  // the root: the overlay's lower layer
	Upper     string            `json:"upper"`  // the container's own changes
	Work      string            `json:"work"`   // overlayfs's work dir
	Merged    string            `json:"merged"` // where the root is assembled
	Mounts    map[string]string `json:"mounts"` // host path → container path
	Socket    string            `json:"socket"` // host path of the coreX socket
	Env       map[string]string `json:"env"`
	MaxOutput int               `json:"max_output"`
	Resolv    string            `json:"resolv"` // /etc/resolv.conf content, when set
}

// MaybeCoreX runs a container's coreX when this process was started as one
// by an agent, and never returns then. Programs that embed the agent call
// it first thing in main (and tests in TestMain).
func MaybeCoreX() {
	v := os.Getenv(coreXEnv)
	if v == "" {
		return
	}
	if err := runCoreX(v); err != nil {
		fmt.Fprintln(os.Stderr, "corex:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runCoreX assembles the container's root (an overlay of its root and its
// own changes, the requested bind mounts, /proc, /dev, /sys), pivots into
// it and serves core0's protocol on the socket the agent dispatches to.
func runCoreX(raw string) error {
	var cfg coreXConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		return err
	}
	os.Unsetenv(coreXEnv) //nolint:errcheck
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := mountRoot(&cfg); err != nil {
		return err
	}
	if err := mountSpecial(cfg.Merged); err != nil {
		return err
	}
	// Bind mounts, shortest container path first so nested ones stack.
	targets := make([]string, 0, len(cfg.Mounts))
	for src, dst := range cfg.Mounts {
		targets = append(targets, dst+"\x00"+src)
	}
	sort.Strings(targets)
	for _, t := range targets {
		dst, src, _ := strings.Cut(t, "\x00")
		if err := bind(src, filepath.Join(cfg.Merged, filepath.Clean("/"+dst))); err != nil {
			return fmt.Errorf("mount %s on %s: %w", src, dst, err)
		}
	}
	writeEtc(cfg)
	os.Remove(cfg.Socket) //nolint:errcheck
	ln, err := net.Listen("unix", cfg.Socket)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Socket, err)
	}
	old := filepath.Join(cfg.Merged, ".oldroot")
	if err := os.MkdirAll(old, 0o700); err != nil {
		return err
	}
	if err := syscall.PivotRoot(cfg.Merged, old); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	if err := syscall.Unmount("/.oldroot", syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("detach the host's root: %w", err)
	}
	os.Remove("/.oldroot") //nolint:errcheck
	if cfg.Hostname != "" {
		if err := syscall.Sethostname([]byte(cfg.Hostname)); err != nil {
			return fmt.Errorf("set the hostname: %w", err)
		}
	}
	os.Clearenv()
	os.Setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") //nolint:errcheck
	os.Setenv("HOME", "/root")                                                        //nolint:errcheck
	if cfg.Hostname != "" {
		os.Setenv("HOSTNAME", cfg.Hostname) //nolint:errcheck
	}
	for k, v := range cfg.Env {
		os.Setenv(k, v) //nolint:errcheck
	}
	a, err := New(Config{Listener: ln, NoAuth: true, MaxOutput: cfg.MaxOutput, container: cfg.ID,
		RebootCommand: []string{"kill", "-TERM", "1"}})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return a.Run(ctx)
}

// mountRoot mounts the overlay of the root and the container's changes at
// Merged; where overlayfs is refused (a root on a filesystem it cannot
// stack on), the root is copied into Upper and bound instead.
func mountRoot(cfg *coreXConfig) error {
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", cfg.Lower, cfg.Upper, cfg.Work)
	err := syscall.Mount("overlay", cfg.Merged, "overlay", 0, opts)
	if err == nil {
		return nil
	}
	if cerr := copyTree(cfg.Lower, cfg.Upper); cerr != nil {
		return fmt.Errorf("mount the root (overlay: %v; copy: %w)", err, cerr)
	}
	return bind(cfg.Upper, cfg.Merged)
}

func bind(src, dst string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		err = os.MkdirAll(dst, 0o755)
	} else {
		if err = os.MkdirAll(filepath.Dir(dst), 0o755); err == nil {
			var f *os.File
			if f, err = os.OpenFile(dst, os.O_CREATE, 0o644); err == nil {
				f.Close()
			}
		}
	}
	if err != nil {
		return err
	}
	return syscall.Mount(src, dst, "", syscall.MS_BIND|syscall.MS_REC, "")
}

// mountSpecial gives the root its own /proc (this PID namespace's), a
// /dev with the usual devices, /sys and a /tmp.
func mountSpecial(root string) error {
	proc := filepath.Join(root, "proc")
	if err := os.MkdirAll(proc, 0o555); err != nil {
		return err
	}
	if err := syscall.Mount("proc", proc, "proc", syscall.MS_NOSUID|syscall.MS_NOEXEC|syscall.MS_NODEV, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	dev := filepath.Join(root, "dev")
	if err := os.MkdirAll(dev, 0o755); err != nil {
		return err
	}
	if err := syscall.Mount("tmpfs", dev, "tmpfs", syscall.MS_NOSUID, "mode=755,size=65536k"); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		if err := bind("/dev/"+d, filepath.Join(dev, d)); err != nil && d != "tty" {
			return fmt.Errorf("/dev/%s: %w", d, err)
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		os.Symlink(target, filepath.Join(dev, name)) //nolint:errcheck
	}
	os.MkdirAll(filepath.Join(dev, "pts"), 0o755)  //nolint:errcheck
	os.MkdirAll(filepath.Join(dev, "shm"), 0o1777) //nolint:errcheck
	sys := filepath.Join(root, "sys")
	if err := os.MkdirAll(sys, 0o555); err == nil {
		syscall.Mount("sysfs", sys, "sysfs", syscall.MS_RDONLY|syscall.MS_NOSUID|syscall.MS_NOEXEC|syscall.MS_NODEV, "") //nolint:errcheck
	}
	tmp := filepath.Join(root, "tmp")
	if err := os.MkdirAll(tmp, 0o1777); err == nil {
		syscall.Mount("tmpfs", tmp, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=1777") //nolint:errcheck
	}
	return nil
}

// writeEtc gives the container its hostname, hosts and resolver files.
func writeEtc(cfg coreXConfig) {
	etc := filepath.Join(cfg.Merged, "etc")
	if os.MkdirAll(etc, 0o755) != nil {
		return
	}
	if cfg.Hostname != "" {
		os.WriteFile(filepath.Join(etc, "hostname"), []byte(cfg.Hostname+"\n"), 0o644) //nolint:errcheck
		os.WriteFile(filepath.Join(etc, "hosts"), []byte("127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t"+
			cfg.Hostname+"\n"), 0o644) //nolint:errcheck
	}
	if cfg.Resolv != "" {
		os.Remove(filepath.Join(etc, "resolv.conf"))                               //nolint:errcheck
		os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte(cfg.Resolv), 0o644) //nolint:errcheck
	}
}

// copyTree copies the directory src into dst (files, directories,
// symlinks; modes kept).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case info.Mode().IsRegular():
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
			if err != nil {
				return err
			}
			_, err = io.Copy(out, in)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			return err
		}
		return nil
	})
}
