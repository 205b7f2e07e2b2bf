//go:build wasip1

package main

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"strings"

	"github.com/crowbar-go/crowbar/sdk"
)

// A container's files: download (GET ?path=), upload (POST ?path= with a
// multipart "file"), delete (DELETE with {"path"} or ?path=).

// chunk is how much one filesystem.read or write moves.
const chunk = 512 << 10

func filePath(r *sdk.Request) (string, *sdk.Response) {
	p := r.QueryValue("path")
	if p == "" && r.Method == "DELETE" && len(r.Body) > 0 {
		var body struct {
			Path string `json:"path"`
		}
		if err := r.Decode(&body); err != nil {
			return "", sdk.Error(sdk.StatusBadRequest, "%v", err)
		}
		p = body.Path
	}
	if p == "" || !strings.HasPrefix(p, "/") {
		return "", invalid("path", "must be an absolute path in the container, given as ?path=")
	}
	return p, nil
}

// fileTarget is the running container a file route acts in and the path.
func fileTarget(r *sdk.Request) (sdk.NodeRef, string, *sdk.Response) {
	ref, fail := inside(r)
	if fail != nil {
		return sdk.NodeRef{}, "", fail
	}
	path, fail := filePath(r)
	return ref, path, fail
}

func download(r *sdk.Request) *sdk.Response {
	ref, path, fail := fileTarget(r)
	if fail != nil {
		return fail
	}
	var fd string
	if err := ref.JSON("filesystem.open", map[string]any{"file": path, "mode": "r"}, &fd); err != nil {
		return failed(err)
	}
	defer ref.Call("filesystem.close", map[string]any{"fd": fd}) //nolint:errcheck
	var out bytes.Buffer
	for {
		var block string
		if err := ref.JSON("filesystem.read", map[string]any{"fd": fd}, &block); err != nil {
			return failed(err)
		}
		b, err := base64.StdEncoding.DecodeString(block)
		if err != nil {
			return sdk.Error(sdk.StatusBadGateway, "the node answered a block that is not base64: %v", err)
		}
		if len(b) == 0 {
			break
		}
		out.Write(b)
	}
	return &sdk.Response{Status: sdk.StatusOK, Headers: map[string][]string{"Content-Type": {"application/octet-stream"}}, Body: out.Bytes()}
}

// uploaded reads the "file" part of a multipart body. Zero-OS's generated
// Python client sends "Content-Type: multipart/form-data" without the
// boundary; the boundary is then read from the body's first line.
func uploaded(r *sdk.Request) ([]byte, *sdk.Response) {
	_, params, err := mime.ParseMediaType(r.Header("Content-Type"))
	boundary := params["boundary"]
	if err != nil || boundary == "" {
		first, _, _ := bytes.Cut(r.Body, []byte("\r\n"))
		if !bytes.HasPrefix(first, []byte("--")) {
			return nil, sdk.Error(sdk.StatusBadRequest, "the upload must be multipart/form-data with a part named file")
		}
		boundary = string(first[2:])
	}
	mr := multipart.NewReader(bytes.NewReader(r.Body), boundary)
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil, sdk.Error(sdk.StatusBadRequest, "the upload has no part named file")
		}
		if err != nil {
			return nil, sdk.Error(sdk.StatusBadRequest, "malformed multipart body: %v", err)
		}
		if part.FormName() == "file" {
			b, err := io.ReadAll(part)
			if err != nil {
				return nil, sdk.Error(sdk.StatusBadRequest, "malformed multipart body: %v", err)
			}
			return b, nil
		}
	}
}

func upload(r *sdk.Request) *sdk.Response {
	ref, path, fail := fileTarget(r)
	if fail != nil {
		return fail
	}
	data, fail := uploaded(r)
	if fail != nil {
		return fail
	}
	var fd string
	if err := ref.JSON("filesystem.open", map[string]any{"file": path, "mode": "w", "perm": 0o644}, &fd); err != nil {
		return failed(err)
	}
	for len(data) > 0 {
		n := min(len(data), chunk)
		if _, err := ref.Call("filesystem.write", map[string]any{"fd": fd, "block": base64.StdEncoding.EncodeToString(data[:n])}); err != nil {
			ref.Call("filesystem.close", map[string]any{"fd": fd}) //nolint:errcheck
			return failed(err)
		}
		data = data[n:]
	}
	if _, err := ref.Call("filesystem.close", map[string]any{"fd": fd}); err != nil {
		return failed(err)
	}
	return &sdk.Response{Status: sdk.StatusNoContent}
}

func deleteFile(r *sdk.Request) *sdk.Response {
	ref, path, fail := fileTarget(r)
	if fail != nil {
		return fail
	}
	var exists bool
	if err := ref.JSON("filesystem.exists", map[string]any{"path": path}, &exists); err != nil {
		return failed(err)
	}
	if !exists {
		return sdk.Error(sdk.StatusNotFound, "no file %s in container '%s'", path, r.Param("name"))
	}
	if _, err := ref.Call("filesystem.remove", map[string]any{"path": path}); err != nil {
		return failed(err)
	}
	return &sdk.Response{Status: sdk.StatusNoContent}
}
