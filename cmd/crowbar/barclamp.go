//go:build !agentonly

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/crowbar-go/crowbar/barclamps"
	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/plugins"
	"github.com/spf13/cobra"
)

func newBarclampCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "barclamp",
		Short: "Build and inspect barclamp modules (for authors)",
	}
	var out string
	build := &cobra.Command{
		Use:   "build DIR",
		Short: "Compile the barclamp in DIR to WebAssembly with the stock Go toolchain",
		Long: `Compile the barclamp in DIR (a Go main package using the crowbar sdk) with
GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared, then check that the
result loads: ABI version and manifest.`,
		Example: `  crowbar barclamp build ./examples/hello-barclamp
  crowbar barclamp build ./mybarclamp -o mybarclamp.wasm`,
		Args: exactArgs(1, "DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
				return usageError{fmt.Errorf("%s is not a directory", dir)}
			}
			if out == "" {
				abs, err := filepath.Abs(dir)
				if err != nil {
					return err
				}
				out = filepath.Base(abs) + ".wasm" // "." names the directory it is
			}
			m, digest, err := buildBarclamp(cmd.Context(), dir, out)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "built %s: barclamp %s %s, %d role(s), %d route(s), sha256 %s\n",
				out, m.Name, m.Version, len(m.Roles), len(m.Routes), digest)
			return nil
		},
	}
	build.Flags().StringVarP(&out, "output", "o", "", "output file (default DIR's name + .wasm)")
	inspect := &cobra.Command{
		Use:     "inspect FILE",
		Short:   "Load a barclamp module and print its manifest as JSON",
		Example: `  crowbar barclamp inspect hello-barclamp.wasm`,
		Args:    exactArgs(1, "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, digest, err := inspectFile(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			b, _ := json.MarshalIndent(map[string]any{"digest": digest, "manifest": m}, "", "  ")
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return nil
		},
	}
	var cacheDir string
	precompile := &cobra.Command{
		Use:   "precompile",
		Short: "Compile the embedded first-party barclamps into the compilation cache (make build runs it)",
		Long: `Compile the first-party barclamps this binary embeds into the compilation cache
(--wasm-cache, default the user's cache dir), so that a server's first start
finds them compiled and is ready at once.`,
		Example: `  crowbar barclamp precompile
  crowbar barclamp precompile --wasm-cache /var/cache/crowbar/wasm`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags()); err != nil {
				return err
			}
			if cacheDir == "" {
				cacheDir = defaultWasmCache(".")
			}
			embedded, err := barclamps.Embedded()
			if err != nil {
				return err
			}
			start := time.Now()
			h, err := plugins.New(cmd.Context(), plugins.Config{CacheDir: cacheDir, PoolSize: 1, Trusted: barclamps.Trusted()})
			if err != nil {
				return err
			}
			defer h.Close(cmd.Context()) //nolint:errcheck
			var wg sync.WaitGroup
			errs := make(chan error, len(embedded))
			sem := make(chan struct{}, runtime.GOMAXPROCS(0))
			for name, wasm := range embedded {
				wg.Add(1)
				go func(name string, wasm []byte) {
					defer wg.Done()
					sem <- struct{}{}
					defer func() { <-sem }()
					m, err := h.Compile(cmd.Context(), name, wasm)
					if err != nil {
						errs <- fmt.Errorf("%s: %w", name, err)
						return
					}
					m.Close(cmd.Context()) //nolint:errcheck
				}(name, wasm)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "compiled %d barclamps into %s in %s\n", len(embedded), cacheDir, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	precompile.Flags().StringVar(&cacheDir, "wasm-cache", "", "the compilation cache (default the user's cache dir, crowbar/wasm-cache)")
	cmd.AddCommand(build, inspect, precompile, newBarclampNewCmd(), newBarclampTestCmd())
	return cmd
}

// buildBarclamp compiles the barclamp in dir to out (made absolute) with
// the stock Go toolchain, its output on stderr, and checks that it loads.
func buildBarclamp(ctx context.Context, dir, out string) (*barclamp.Manifest, string, error) {
	abs, err := filepath.Abs(out)
	if err != nil {
		return nil, "", err
	}
	gb := exec.CommandContext(ctx, "go", "build", "-buildmode=c-shared", "-o", abs, ".")
	gb.Dir = dir // the barclamp's own module (or the one it sits in)
	gb.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	gb.Stdout, gb.Stderr = os.Stderr, os.Stderr
	if err := gb.Run(); err != nil {
		return nil, "", fmt.Errorf("go build: %w", err)
	}
	return inspectFile(ctx, abs)
}

// inspectFile loads a module the way the server would and validates its
// manifest.
func inspectFile(ctx context.Context, path string) (*barclamp.Manifest, string, error) {
	wasm, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	h, err := plugins.New(ctx, plugins.Config{PoolSize: 1})
	if err != nil {
		return nil, "", err
	}
	defer h.Close(ctx) //nolint:errcheck
	mod, err := h.Compile(ctx, "", wasm)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	defer mod.Close(ctx) //nolint:errcheck
	m := mod.Manifest()
	if err := m.Validate(); err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return m, barclamp.Digest(wasm), nil
}

// exactArgs is cobra.ExactArgs with a usage error naming what is missing.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("expected %s, got %d argument(s)", names, len(args))}
		}
		return nil
	}
}
