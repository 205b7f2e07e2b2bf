package api_test

import (
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

var fuzzTypes = []string{"application/json", "application/x-www-form-urlencoded", "application/vnd.crowbar.node.obj+json; version=2.0",
	"text/plain", "multipart/form-data; boundary=x", ""}

// FuzzNodeBodies: whatever body, of whatever type, creating or updating a
// node never gets a 5xx (the server's fault), only an answer or a 4xx.
func FuzzNodeBodies(f *testing.F) {
	for _, b := range []string{`{"name": "f1.example.com"}`, "name=f2.example.com&bootenv=local", `{"name": "x", "alive": "yes"}`,
		`{"hint": {"admin_macs": [1, 2]}}`, `[]`, `{"name": "a.b", "order": 1e400}`, `{"deployment": {"id": 1}}`, "name=%zz", `{"name":"\u0000.a"}`} {
		for i := range fuzzTypes {
			f.Add(uint8(i), b)
		}
	}
	st := storetest.Open(f, filepath.Join(f.TempDir(), "crowbar.db"))
	s := apitest.New(f, st)
	s.Must(201, "POST", "/api/v2/nodes", `{"name": "target.example.com"}`)
	f.Fuzz(func(t *testing.T, kind uint8, body string) {
		ct := fuzzTypes[int(kind)%len(fuzzTypes)]
		for _, call := range [][2]string{{"POST", "/api/v2/nodes"}, {"PUT", "/api/v2/nodes/target.example.com"}} {
			req, _ := http.NewRequest(call[0], s.URL+call[1], strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+s.Token)
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			answer, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				t.Fatalf("%s %s (%s) %q: %d %s", call[0], call[1], ct, body, resp.StatusCode, answer)
			}
		}
	})
}
