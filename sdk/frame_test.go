package sdk

import (
	"bytes"
	"reflect"
	"testing"
)

func sampleFrame() HTTPFrame {
	return HTTPFrame{Method: "PUT", Path: "/x/v2/things/a b", Host: "h:3000", Advertise: "http://10.0.0.1:3000",
		Route: "PUT /things/{id}", Params: map[string]string{"id": "a b", "other": ""},
		Query:     map[string][]string{"q": {"1", "two"}, "empty": {}},
		Headers:   map[string][]string{"Content-Type": {"application/json"}},
		HasCaller: true, CallerUser: "ann", CallerRole: "operator", CallerScheme: "session",
		Body: []byte("\x00{\"binary\": true}\xff")}
}

// TestHTTPFrameRoundTrip: what one end writes the other reads back field
// for field, requests and answers, with and without a caller; the bytes do
// not depend on map order.
func TestHTTPFrameRoundTrip(t *testing.T) {
	in := sampleFrame()
	b := in.AppendRequest(nil)
	var out HTTPFrame
	if err := out.ReadRequest(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("request:\n got %+v\nwant %+v", out, in)
	}
	for i := 0; i < 20; i++ {
		if again := in.AppendRequest(nil); !bytes.Equal(again, b) {
			t.Fatal("the same request framed twice differs")
		}
	}
	open := HTTPFrame{Method: "GET", Path: "/p/v2/boot", Route: "GET /boot"}
	var got HTTPFrame
	if err := got.ReadRequest(open.AppendRequest(nil)); err != nil || got.HasCaller || got.Params != nil || len(got.Body) != 0 {
		t.Errorf("an open route's request came back as %+v (%v)", got, err)
	}
	resp := HTTPFrame{Status: 201, Headers: map[string][]string{"Location": {"/x"}}, Body: []byte("{}")}
	var r HTTPFrame
	if err := r.ReadResponse(resp.AppendResponse(nil)); err != nil || r.Status != 201 || r.Headers["Location"][0] != "/x" || string(r.Body) != "{}" {
		t.Errorf("answer came back as %+v (%v)", r, err)
	}
}

// TestHTTPFrameRefusesDamage: every truncation of a frame, trailing bytes,
// a wrong magic and counts larger than the frame are errors, never panics
// or huge allocations.
func TestHTTPFrameRefusesDamage(t *testing.T) {
	f := sampleFrame()
	b := f.AppendRequest(nil)
	for n := 0; n < len(b); n++ {
		var out HTTPFrame
		if out.ReadRequest(b[:n]) == nil {
			t.Fatalf("a request cut to %d of %d bytes was accepted", n, len(b))
		}
	}
	var out HTTPFrame
	if out.ReadRequest(append(b[:len(b):len(b)], 0)) == nil {
		t.Error("trailing bytes accepted")
	}
	if out.ReadResponse([]byte("XXXX\xc8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")) == nil {
		t.Error("a wrong magic accepted")
	}
	huge := append([]byte(frameMagic), 201, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f)
	if out.ReadResponse(huge) == nil {
		t.Error("a header count larger than the frame accepted")
	}
}

// FuzzHTTPFrame: reading arbitrary bytes as a request or an answer never
// panics, and what is read is written back to the same meaning.
func FuzzHTTPFrame(f *testing.F) {
	s := sampleFrame()
	f.Add(s.AppendRequest(nil))
	f.Add(s.AppendResponse(nil))
	f.Add([]byte(frameMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		var req HTTPFrame
		if req.ReadRequest(b) == nil {
			var again HTTPFrame
			if err := again.ReadRequest(req.AppendRequest(nil)); err != nil || !reflect.DeepEqual(norm(req), norm(again)) {
				t.Fatalf("request %+v read back as %+v (%v)", req, again, err)
			}
		}
		var resp HTTPFrame
		if resp.ReadResponse(b) == nil {
			var again HTTPFrame
			if err := again.ReadResponse(resp.AppendResponse(nil)); err != nil || again.Status != resp.Status ||
				!bytes.Equal(again.Body, resp.Body) || len(again.Headers) != len(resp.Headers) {
				t.Fatalf("answer %+v read back as %+v (%v)", resp, again, err)
			}
		}
	})
}

// norm makes empty and nil collections alike for comparison.
func norm(f HTTPFrame) HTTPFrame {
	if len(f.Params) == 0 {
		f.Params = nil
	}
	if len(f.Query) == 0 {
		f.Query = nil
	}
	if len(f.Headers) == 0 {
		f.Headers = nil
	}
	if len(f.Body) == 0 {
		f.Body = nil
	}
	if !f.HasCaller {
		f.CallerUser, f.CallerRole, f.CallerScheme = "", "", ""
	}
	return f
}
