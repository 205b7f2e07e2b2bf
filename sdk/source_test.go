//go:build !wasip1

package sdk_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/crowbar-go/crowbar/sdk"
)

// Every file of the SDK a barclamp compiles is in Source: a file added to
// the SDK without being embedded would break barclamps scaffolded outside
// this repository.
func TestSourceHasEverySDKFile(t *testing.T) {
	var want, got []string
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") || f == "source.go" {
			continue
		}
		want = append(want, f)
		b, err := fs.ReadFile(sdk.Source, f)
		disk, _ := os.ReadFile(f)
		if err != nil || string(b) != string(disk) {
			t.Errorf("%s is not embedded as it is on disk (%v)", f, err)
		}
	}
	entries, _ := fs.ReadDir(sdk.Source, ".")
	for _, e := range entries {
		got = append(got, e.Name())
	}
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("embedded %v, want %v", got, want)
	}
}
