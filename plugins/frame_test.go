package plugins_test

import (
	"bytes"
	"context"
	"reflect"
	"testing"

	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/crowbar-go/crowbar/plugins"
	"github.com/crowbar-go/crowbar/plugins/pluginstest"
)

// TestHTTPFrameAndJSONAgree: a module built with this SDK takes route calls
// in the binary frame, one built without it (as modules made before the
// frame were) as JSON; a handler sees the same request either way and its
// answer comes back the same, byte for byte.
func TestHTTPFrameAndJSONAgree(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t, storetest.Databases(t)[0].DSN)
	h := pluginstest.Host(t, st, plugins.Config{PoolSize: 1})
	reqs := []*barclamp.HTTPRequest{
		{Method: "POST", Path: "/echo/v2/mirror/a%20b", Host: "crowbar.example:3000", Advertise: "http://10.1.0.1:3000",
			Route: "POST /mirror/{id}", Params: map[string]string{"id": "a b"},
			Query:   map[string][]string{"q": {"1", "two"}, "flag": {""}},
			Headers: map[string][]string{"Content-Type": {"application/octet-stream"}, "X-Many": {"a", "b"}},
			Caller:  &barclamp.Caller{Username: "ann", Role: "operator", Scheme: "session"},
			Body:    []byte("not json: \x01\x02 ✓")},
		{Method: "POST", Path: "/echo/v2/mirror/x", Route: "POST /mirror/{id}", Params: map[string]string{"id": "x"}},
		{Method: "GET", Path: "/echo/v2/nope", Route: "GET /nope"},
	}
	var answers [2][]*barclamp.HTTPResponse
	for i, tags := range []string{"", "crowbar_json_http"} {
		wasm := pluginstest.BuildTags(t, "plugins/testdata/echo", tags)
		if exports := bytes.Contains(wasm, []byte("crowbar_http_frame")); exports != (tags == "") {
			t.Fatalf("built with tags %q, the module exports crowbar_http_frame: %v", tags, exports)
		}
		mod, err := h.Compile(ctx, "", wasm)
		if err != nil {
			t.Fatal(err)
		}
		defer mod.Close(ctx)
		for _, req := range reqs {
			resp, err := mod.HTTP(ctx, req)
			if err != nil {
				t.Fatalf("%s (tags %q): %v", req.Route, tags, err)
			}
			answers[i] = append(answers[i], resp)
		}
	}
	for i := range reqs {
		frame, js := answers[0][i], answers[1][i]
		if frame.Status != js.Status || string(frame.Body) != string(js.Body) || !reflect.DeepEqual(frame.Headers, js.Headers) {
			t.Errorf("%s: frame %d %v %s\n         json %d %v %s", reqs[i].Route, frame.Status, frame.Headers, frame.Body, js.Status, js.Headers, js.Body)
		}
	}
	if a := answers[0][0]; a.Status != 200 || a.Headers["X-Mirror"][1] != "2" ||
		!reflect.DeepEqual(a.Headers["Content-Type"], []string{"application/json"}) {
		t.Errorf("mirror answered %d %v %s", a.Status, a.Headers, a.Body)
	}
	if answers[0][2].Status != 404 {
		t.Errorf("an unknown route answered %d", answers[0][2].Status)
	}
}
