//go:build !agentonly

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/crowbar-go/crowbar/api/client"
	"github.com/spf13/cobra"
)

// cliOptions are the client commands' shared flags.
type cliOptions struct {
	endpoint   string
	key        string
	token      string
	keyFile    string
	format     string
	attributes []string
	timeout    time.Duration
	out        io.Writer
	errOut     io.Writer
}

const defaultEndpoint = "http://127.0.0.1:3000"

// keyFiles are where an install key is looked for when no credentials are
// given: the server's default data dir, then the system locations.
func keyFiles() []string {
	files := []string{}
	if d := os.Getenv("CROWBAR_DATA_DIR"); d != "" {
		files = append(files, filepath.Join(d, "crowbar.install.key"))
	}
	return append(files, "crowbar.install.key", "data/crowbar.install.key", "/var/lib/crowbar/crowbar.install.key",
		"/etc/crowbar.install.key")
}

// addClientFlags adds the connection and output flags to a client command.
func (o *cliOptions) addFlags(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&o.endpoint, "endpoint", defaultEndpoint, "the crowbar server (env CROWBAR_ENDPOINT)")
	f.StringVar(&o.key, "key", "", "digest credentials user:password (env CROWBAR_KEY; default: the install key file)")
	f.StringVar(&o.token, "token", "", "a bearer token from 'crowbar token create' (env CROWBAR_TOKEN)")
	f.StringVar(&o.keyFile, "key-file", "", "read user:password from this file (default: "+strings.Join(keyFiles(), ", ")+")")
	f.StringVar(&o.format, "format", "json", "output: json or table")
	f.StringSliceVar(&o.attributes, "attributes", nil, "fields to return (sent as x-return-attributes), e.g. name,alive")
	f.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up on a request after this long")
}

// check validates the output flags (a usage error, before any request).
func (o *cliOptions) check() error {
	if o.format != "json" && o.format != "table" {
		return usageError{fmt.Errorf("--format must be json or table, not %q", o.format)}
	}
	return nil
}

// client builds the API client: credentials from --key / CROWBAR_KEY, a
// token, or the install key file, in that order.
func (o *cliOptions) client() (*client.Client, error) {
	var opts []client.Option
	switch {
	case o.key != "":
		user, pass, ok := strings.Cut(o.key, ":")
		if !ok {
			return nil, usageError{errors.New("--key (CROWBAR_KEY) must be user:password")}
		}
		opts = append(opts, client.Digest(user, pass))
	case o.token != "":
		opts = append(opts, client.Bearer(o.token))
	default:
		files := keyFiles()
		if o.keyFile != "" {
			files = []string{o.keyFile}
		}
		var found bool
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			user, pass, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
			if !ok {
				return nil, fmt.Errorf("%s does not hold user:password", f)
			}
			opts, found = append(opts, client.Digest(user, pass)), true
			break
		}
		if !found {
			return nil, usageError{fmt.Errorf("no credentials: set --key or CROWBAR_KEY (user:password), --token, or --key-file (looked in %s)", strings.Join(files, ", "))}
		}
	}
	return client.New(o.endpoint, opts...)
}

// run sets up a context with the timeout and a client, then calls fn.
func (o *cliOptions) run(fn func(ctx context.Context, c *client.Client) error) error {
	return o.runWithin(func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), o.timeout)
	}, fn)
}

// runWithin checks the flags, builds the client and calls fn with the
// context newCtx makes (a longer wait, or until a signal).
func (o *cliOptions) runWithin(newCtx func() (context.Context, context.CancelFunc), fn func(ctx context.Context, c *client.Client) error) error {
	if err := o.check(); err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	ctx, cancel := newCtx()
	defer cancel()
	return fn(ctx, c)
}

// listOptions turns --attributes into list options.
func (o *cliOptions) listOptions() *client.ListOptions {
	return &client.ListOptions{Attributes: o.attributes}
}

// print writes v as indented JSON, or as a table of its fields.
func (o *cliOptions) print(v any) error {
	if o.format == "table" {
		return o.table(v)
	}
	if raw, ok := v.([]byte); ok {
		_, err := o.out.Write(raw)
		return err
	}
	enc := json.NewEncoder(o.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// defaultColumns are the table columns of each kind of object, when
// --attributes does not choose.
var defaultColumns = []string{"id", "name", "username", "state_name", "alive", "available", "bootenv", "deployment_id",
	"node_id", "role_id", "version", "status", "description"}

func (o *cliOptions) table(v any) error {
	var rows []client.Object
	switch t := v.(type) {
	case []client.Object:
		rows = t
	case client.Object:
		rows = []client.Object{t}
	default:
		return o.print(v)
	}
	cols := o.attributes
	if len(cols) == 0 {
		have := map[string]bool{}
		for _, r := range rows {
			for k := range r {
				have[k] = true
			}
		}
		for _, c := range defaultColumns {
			if have[c] {
				cols = append(cols, c)
			}
		}
		if len(cols) == 0 {
			for k := range have {
				cols = append(cols, k)
			}
			sort.Strings(cols)
		}
	}
	w := tabwriter.NewWriter(o.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, strings.ToUpper(strings.Join(cols, "\t")))
	for _, r := range rows {
		cells := make([]string, len(cols))
		for i, c := range cols {
			cells[i] = cell(r[c])
		}
		fmt.Fprintln(w, strings.Join(cells, "\t"))
	}
	return w.Flush()
}

func cell(v any) string {
	switch t := v.(type) {
	case nil:
		return "-"
	case string:
		return t
	case float64:
		return fmt.Sprint(t)
	case bool:
		return fmt.Sprint(t)
	}
	b, _ := json.Marshal(v)
	if len(b) > 40 {
		return string(b[:37]) + "..."
	}
	return string(b)
}

// jsonArg parses a JSON object argument (a usage error when malformed).
func jsonArg(arg string) (client.Object, error) {
	var obj client.Object
	if err := json.Unmarshal([]byte(arg), &obj); err != nil {
		return nil, usageError{fmt.Errorf("%q is not a JSON object: %v", arg, err)}
	}
	return obj, nil
}

// word checks a grammar keyword ("to", "attrib", "in").
func word(args []string, i int, want string) error {
	if args[i] != want {
		return usageError{fmt.Errorf("expected %q, got %q", want, args[i])}
	}
	return nil
}
