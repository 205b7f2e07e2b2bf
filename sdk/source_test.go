//go:build !wasip1

package sdk_test

import (
	"io/fs"
	"net/http"
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

// canonicalHeader (the SDK's, to avoid net/http) agrees with net/http.
func TestCanonicalHeaderMatchesNetHTTP(t *testing.T) {
	for _, name := range []string{"content-type", "Content-Type", "CONTENT-TYPE", "x-crowbar-request-id", "accept",
		"www-authenticate", "a", "", "-x-", "x--y", "content type", "ünicode", "X_Under_Score", "etag", "Last-Event-ID"} {
		if got, want := sdk.CanonicalHeader(name), http.CanonicalHeaderKey(name); got != want {
			t.Errorf("%q: %q, net/http says %q", name, got, want)
		}
	}
}
