//go:build !agentonly

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"text/template"

	"github.com/crowbar-go/crowbar/sdk"
	"github.com/spf13/cobra"
)

// sdkDir is where a scaffolded barclamp keeps the SDK it builds with, as a
// module of its own the barclamp's go.mod points at with a replace.
const sdkDir = "crowbar-sdk"

// newBarclampName is what `barclamp new` accepts: a name that is at once a
// barclamp name, the first segment of its routes, a directory and the last
// element of a Go module path.
var newBarclampName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

func newBarclampNewCmd() *cobra.Command {
	var module string
	cmd := &cobra.Command{
		Use:   "new NAME [DIR]",
		Short: "Scaffold a barclamp module that builds at once, outside any crowbar checkout",
		Long: `Write a new barclamp module in DIR (default ./NAME): main.go with one role
and one route, barclamp_test.yaml with the checks 'crowbar barclamp test' runs,
a README, and the SDK this crowbar was built with in DIR/` + sdkDir + ` (the
module's go.mod points at it with a replace). It needs nothing but this binary
and a Go toolchain (1.24 or newer): no download, no crowbar source tree.`,
		Example: `  crowbar barclamp new hello
  crowbar barclamp new inventory ./inventory --module example.com/ops/inventory
  cd hello && crowbar barclamp build . && crowbar barclamp test .`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usageError{fmt.Errorf("want NAME [DIR], got %d argument(s)", len(args))}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name, dir := args[0], args[0]
			if len(args) == 2 {
				dir = args[1]
			}
			if !newBarclampName.MatchString(name) || name == "api" {
				return usageError{fmt.Errorf("barclamp name %q: want lower-case letters, digits and hyphens, starting with a letter, at most 63 (and not 'api')", name)}
			}
			if module == "" {
				module = "example.com/" + name
			}
			if err := scaffoldBarclamp(dir, name, module); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote barclamp %s (module %s) in %s\nnext: crowbar barclamp build %s && crowbar barclamp test %s\n",
				name, module, dir, dir, dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&module, "module", "", "the new module's path (default example.com/NAME)")
	return cmd
}

// scaffoldBarclamp writes the module; it refuses a DIR that holds files.
func scaffoldBarclamp(dir, name, module string) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return usageError{fmt.Errorf("%s is not empty: choose a new or empty directory", dir)}
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	data := map[string]string{"Name": name, "Module": module, "SDKDir": sdkDir, "Version": version}
	files := map[string]string{
		"go.mod":             scaffoldGoMod,
		"main.go":            scaffoldMain,
		"barclamp_test.yaml": scaffoldChecks,
		"README.md":          scaffoldReadme,
		".gitignore":         "*.wasm\n",
		sdkDir + "/go.mod":   "module github.com/crowbar-go/crowbar\n\ngo 1.24\n",
	}
	for path, text := range files {
		var b bytes.Buffer
		if err := template.Must(template.New(path).Parse(text)).Execute(&b, data); err != nil {
			return err
		}
		if err := writeScaffoldFile(filepath.Join(dir, path), b.Bytes()); err != nil {
			return err
		}
	}
	return fs.WalkDir(sdk.Source, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sdk.Source, path)
		if err != nil {
			return err
		}
		return writeScaffoldFile(filepath.Join(dir, sdkDir, "sdk", path), b)
	})
}

func writeScaffoldFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

const scaffoldGoMod = `module {{.Module}}

go 1.24

require github.com/crowbar-go/crowbar v0.0.0-00010101000000-000000000000

// The SDK of the crowbar that scaffolded this module ({{.Version}}), kept
// beside it: the module builds without a download. To take a newer SDK, run
// a newer crowbar's 'barclamp new' elsewhere and copy its {{.SDKDir}} here.
replace github.com/crowbar-go/crowbar => ./{{.SDKDir}}
`

const scaffoldMain = `//go:build wasip1

// Command {{.Name}} is a crowbar barclamp: build it with
// 'crowbar barclamp build .', check it with 'crowbar barclamp test .'.
package main

import "github.com/crowbar-go/crowbar/sdk"

func init() {
	sdk.Register(&sdk.Barclamp{
		Name:    "{{.Name}}",
		Version: "0.1.0",
		Roles: []sdk.Role{{"{{"}}
			Name:   "{{.Name}}-node",
			OnTodo: converge,
		{{"}}"}},
		Routes: []sdk.Route{
			{Method: "GET", Path: "/greetings/{name}", Handler: greet},
		},
	})
}

// converge runs when a node-role of {{.Name}}-node is due: what it returns
// is the node-role's new state and wall data.
func converge(e *sdk.Event) *sdk.Result {
	node, err := e.NodeInfo() // id, name, hint, bootenv, …
	if err != nil {
		return sdk.Failed("reading the node: %v", err)
	}
	sdk.Log(sdk.LevelInfo, "converging", "node", node.Name)
	return sdk.Active(map[string]any{"greeted": node.Name}, "said hello to "+node.Name)
}

// greet answers GET /{{.Name}}/v2/greetings/{name}.
func greet(r *sdk.Request) *sdk.Response {
	return sdk.JSON(sdk.StatusOK, map[string]any{"hello": r.Param("name")})
}

func main() {} // required by the Go toolchain; never called
`

const scaffoldChecks = `# What 'crowbar barclamp test .' checks: it builds this barclamp, runs it in
# a real crowbar host (a throw-away server on SQLite, the barclamp installed
# and enabled), sends the requests and converges the roles below.
requests:
  - name: a greeting
    method: GET
    path: /{{.Name}}/v2/greetings/bob
    status: 200
    contains: '"hello":"bob"'
  - name: an unknown route
    method: GET
    path: /{{.Name}}/v2/nope
    status: 404
roles:
  - role: {{.Name}}-node
    state: active            # or error, with runlog_contains
    wall:                    # a subset of the wall data it must leave
      greeted: test-node.example.com
`

const scaffoldReadme = `# {{.Name}}

A crowbar barclamp. It needs the crowbar binary and a Go toolchain (1.24+);
the SDK it builds with is in ` + "`{{.SDKDir}}/`" + `, written by the crowbar that
scaffolded it ({{.Version}}).

` + "```" + `sh
crowbar barclamp build .            # {{.Name}}.wasm, checked to load
crowbar barclamp test .             # builds, runs barclamp_test.yaml in a real host
crowbar barclamps install {{.Name}}.wasm      # into the server CROWBAR_ENDPOINT names
crowbar barclamps enable {{.Name}} in system
curl --digest -u "$CROWBAR_KEY" http://127.0.0.1:3000/{{.Name}}/v2/greetings/bob
` + "```" + `

main.go declares the barclamp: roles (with hooks the annealer calls when a
node-role is due) and routes (served under /{{.Name}}/v2). Editors: set
GOOS=wasip1 GOARCH=wasm for this module (the SDK only builds for it). The
SDK's reference and the ABI are in crowbar's docs/authors.md and docs/abi.md.
`
