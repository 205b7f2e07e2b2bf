//go:build wasip1

// Command scriptjig is a test barclamp whose roles run on their nodes
// through the script jig: a probe that reads its attribs and leaves wall
// data, a child that finds that wall data in its own attribs, one that
// fails, one for any POSIX shell, and a slow one.
package main

import "github.com/crowbar-go/crowbar/sdk"

func init() {
	sdk.Register(&sdk.Barclamp{
		Name:        "scriptjig",
		Version:     "1.0.0",
		Description: "Test roles run by the script jig",
		Roles: []sdk.Role{
			{Name: "sj-probe", Template: map[string]any{"sj": map[string]any{"greeting": "hello"}},
				Script: `set -e
echo "probing $CROWBAR_NODE as $CROWBAR_ROLE"
stdin=$(cat)
[ "$stdin" = "$(cat "$CROWBAR_ATTRIBS")" ] || { echo "stdin and CROWBAR_ATTRIBS differ" >&2; exit 9; }
greeting=$(grep -o '"greeting":"[^"]*"' "$CROWBAR_ATTRIBS" | head -n 1 | cut -d'"' -f4)
echo "the greeting is $greeting" >&2
printf '{"sj": {"probe": {"node": "%s", "greeting": "%s"}}}\n' "$CROWBAR_NODE" "$greeting" > "$CROWBAR_WALL"
`},
			{Name: "sj-child", Requires: []string{"sj-probe"},
				Script: `#!/bin/sh
node=$(grep -o '"node":"[^"]*"' "$CROWBAR_ATTRIBS" | head -n 1 | cut -d'"' -f4)
[ -n "$node" ] || { echo "the probe's wall data is not in my attribs" >&2; exit 8; }
echo "the probe ran on $node"
printf '{"sj": {"child_saw": "%s"}}' "$node" > "$CROWBAR_WALL"
`},
			{Name: "sj-fail", Script: `echo "about to fail"
echo "the disk is on fire" >&2
exit 3
`},
			// POSIX sh only: it runs on the discovery image (busybox).
			{Name: "sj-uname", Script: `#!/bin/sh
echo "running on $(uname -n), kernel $(uname -r)"
printf '{"sj": {"kernel": "%s", "node": "%s"}}' "$(uname -r)" "$CROWBAR_NODE" > "$CROWBAR_WALL"
`},
			{Name: "sj-slow", Script: `for i in 1 2 3 4 5 6; do echo "step $i"; sleep 0.3; done
`},
		},
	})
}

func main() {}
