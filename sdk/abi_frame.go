//go:build wasip1 && !crowbar_json_http

package sdk

// Built with -tags crowbar_json_http a module lacks this export and gets
// route calls as JSON, as modules built before the frame do (the host's
// tests build one that way to check both paths agree).

// exportHTTPFrame is crowbar_http in the binary envelope (HTTPFrame): a
// host that finds this export sends route calls here instead.
//
//go:wasmexport crowbar_http_frame
func exportHTTPFrame(p, n uint32) uint64 {
	var f HTTPFrame
	var resp *Response
	if err := f.ReadRequest(take(p, n)); err != nil {
		resp = Error(400, "malformed request frame from the host: %v", err)
	} else {
		req := &Request{Method: f.Method, Path: f.Path, Host: f.Host, Advertise: f.Advertise, Route: f.Route,
			Params: f.Params, Query: f.Query, Headers: f.Headers, Body: f.Body}
		if f.HasCaller {
			req.Caller = &Caller{Username: f.CallerUser, Role: f.CallerRole, Scheme: f.CallerScheme}
		}
		resp = current.serve(req)
	}
	out := HTTPFrame{Status: resp.Status, Headers: resp.Headers, Body: resp.Body}
	return pin(out.AppendResponse(make([]byte, 0, 64+len(resp.Body))))
}
