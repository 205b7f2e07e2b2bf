package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/hashicorp/go-hclog"
)

// ContentType returns the OpenCrowbar media type for a type and form
// ("obj", "list", "empty" or "error").
func ContentType(typ, form string) string {
	return "application/vnd.crowbar." + typ + "." + form + "+json; version=2.0"
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// StatusOf maps a domain error to its HTTP status: the one place where that
// mapping lives.
func StatusOf(err error) int {
	var (
		ve *model.ValidationError
		ce *model.ConflictError
		be *model.BadRequestError
		he *httpError
		mb *http.MaxBytesError
		ne *core0.Error
	)
	switch {
	case errors.As(err, &he):
		return he.status
	case errors.As(err, &ne):
		if ne.Kind == core0.Timeout {
			return http.StatusGatewayTimeout
		}
		return http.StatusBadGateway
	case errors.As(err, &mb):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, model.ErrNotFound):
		return http.StatusNotFound
	case errors.As(err, &ve):
		return http.StatusUnprocessableEntity
	case errors.As(err, &ce):
		return http.StatusConflict
	case errors.As(err, &be):
		return http.StatusBadRequest
	case errors.Is(err, context.DeadlineExceeded), store.IsUnavailable(err):
		return http.StatusServiceUnavailable
	case store.IsFull(err):
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}

// httpError carries a status that has no domain meaning (405, 413, 415).
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func statusError(status int, msg string) error { return &httpError{status: status, msg: msg} }

// writeError answers err as a JSON error body. Faults (5xx) are logged with
// the request id and answered with a generic message, so internals never leak.
func writeError(w http.ResponseWriter, r *http.Request, typ string, err error) {
	status := StatusOf(err)
	body := ErrorBody{Status: status, Message: err.Error()}
	var ve *model.ValidationError
	if errors.As(err, &ve) {
		body.Field = ve.Field
	}
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		body.Message = "request body is larger than the limit of " + humanBytes(mb.Limit)
	}
	var ne *core0.Error
	var he *httpError
	switch {
	case errors.As(err, &ne):
		// A node's failure is not the server's: say which node and why.
		loggerFrom(r).Warn("node command failed", "error", err)
	case errors.As(err, &he) && status == http.StatusServiceUnavailable:
		// A deliberate 503 (still starting) says why itself.
	case status == http.StatusServiceUnavailable && store.IsUnavailable(err):
		loggerFrom(r).Warn("request failed: the database is unavailable", "error", err)
		body.Message = "the database is unavailable (restarting or unreachable); try again"
		w.Header().Set("Retry-After", "2")
	case status == http.StatusInsufficientStorage:
		loggerFrom(r).Error("request failed: the database is out of space", "error", err)
		body.Message = "the database is out of space; nothing was changed (free space on the server's disk, then try again)"
	case status >= 500:
		loggerFrom(r).Error("request failed", "error", err)
		body.Message = "internal error; see the server log for request " + w.Header().Get("X-Request-Id")
		if status == http.StatusServiceUnavailable {
			body.Message = "the server could not complete the request in time; try again"
		}
	}
	if typ == "" {
		typ = "error"
	}
	writeJSON(w, status, ContentType(typ, "error"), body)
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		w.Header().Set("Content-Type", ContentType("error", "error"))
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(`{"status":500,"message":"cannot encode response"}`)) //nolint:errcheck
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	w.Write(b) //nolint:errcheck
}

func writeEmpty(w http.ResponseWriter, typ string) {
	w.Header().Set("Content-Type", ContentType(typ, "empty"))
	w.WriteHeader(http.StatusOK)
}

// returnAttributes reads the x-return-attributes header: a JSON array of
// names, or a comma-separated list.
func returnAttributes(r *http.Request) ([]string, error) {
	h := strings.TrimSpace(r.Header.Get("X-Return-Attributes"))
	if h == "" {
		return nil, nil
	}
	var attrs []string
	if strings.HasPrefix(h, "[") {
		if err := json.Unmarshal([]byte(h), &attrs); err != nil {
			return nil, model.BadRequest(`x-return-attributes must be a JSON array of names such as ["name","alive"]: %v`, err)
		}
	} else {
		for _, a := range strings.Split(h, ",") {
			if a = strings.TrimSpace(a); a != "" {
				attrs = append(attrs, a)
			}
		}
	}
	return attrs, nil
}

// trim keeps only attrs of the JSON object b.
func trim(b []byte, attrs []string) (json.RawMessage, error) {
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	out := make(map[string]json.RawMessage, len(attrs))
	for _, a := range attrs {
		if v, ok := all[a]; ok {
			out[a] = v
		}
	}
	return json.Marshal(out)
}

// writeObject answers one object, trimmed to x-return-attributes.
func writeObject(w http.ResponseWriter, r *http.Request, status int, typ string, obj any) {
	attrs, err := returnAttributes(r)
	if err != nil {
		writeError(w, r, typ, err)
		return
	}
	if attrs == nil {
		writeJSON(w, status, ContentType(typ, "obj"), obj)
		return
	}
	b, err := json.Marshal(obj)
	if err == nil {
		var t json.RawMessage
		if t, err = trim(b, attrs); err == nil {
			writeJSON(w, status, ContentType(typ, "obj"), t)
			return
		}
	}
	writeError(w, r, typ, err)
}

// writeList answers a list of objects, each trimmed to x-return-attributes.
func writeList[T any](w http.ResponseWriter, r *http.Request, typ string, items []T) {
	attrs, err := returnAttributes(r)
	if err != nil {
		writeError(w, r, typ, err)
		return
	}
	if items == nil {
		items = []T{}
	}
	if attrs == nil {
		writeJSON(w, http.StatusOK, ContentType(typ, "list"), items)
		return
	}
	out := make([]json.RawMessage, len(items))
	for i := range items {
		b, err := json.Marshal(&items[i])
		if err != nil {
			writeError(w, r, typ, err)
			return
		}
		if out[i], err = trim(b, attrs); err != nil {
			writeError(w, r, typ, err)
			return
		}
	}
	writeJSON(w, http.StatusOK, ContentType(typ, "list"), out)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return itoa(n>>20) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return itoa(n>>10) + " KiB"
	}
	return itoa(n) + " bytes"
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

type ctxKey int

const (
	loggerKey ctxKey = iota
	requestIDKey
)

// loggerFrom returns the request-scoped logger (tagged with the request id).
func loggerFrom(r *http.Request) hclog.Logger {
	if l, ok := r.Context().Value(loggerKey).(hclog.Logger); ok {
		return l
	}
	return hclog.Default()
}
