package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/crowbar-go/crowbar/core/model"
)

// field describes one JSON field of a model, found by reflection once per type.
type field struct {
	name string
	typ  reflect.Type
}

type fieldSet map[string]field

var fieldCache sync.Map // reflect.Type → fieldSet

// fieldsOf lists the JSON fields of struct type t (embedded structs included).
func fieldsOf(t reflect.Type) fieldSet {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.(fieldSet)
	}
	fs := fieldSet{}
	var walk func(reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(f.Type)
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			fs[name] = field{name: name, typ: f.Type}
		}
	}
	walk(t)
	fieldCache.Store(t, fs)
	return fs
}

var (
	jsonType       = reflect.TypeOf(model.JSON(nil))
	stringListType = reflect.TypeOf(model.StringList(nil))
)

// jsonKind names the JSON type a Go field takes, for error messages.
func jsonKind(t reflect.Type) string {
	switch t {
	case jsonType:
		return "a JSON object"
	case stringListType:
		return "an array of strings"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return jsonKind(t.Elem()) + " or null"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return t.String()
}

// formValue types one form value by the field it fills, so that
// "alive=true" sets a boolean and "order=5" an integer.
func formValue(f field, raw string) (json.RawMessage, error) {
	t := f.typ
	if t == jsonType {
		if !json.Valid([]byte(raw)) {
			return nil, model.BadRequest("field '%s' must be %s", f.name, jsonKind(t))
		}
		return json.RawMessage(raw), nil
	}
	if t == stringListType {
		if strings.HasPrefix(strings.TrimSpace(raw), "[") {
			return json.RawMessage(raw), nil
		}
		parts := []string{}
		for _, p := range strings.Split(raw, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		return json.Marshal(parts)
	}
	if t.Kind() == reflect.Pointer {
		if raw == "" || raw == "null" {
			return json.RawMessage("null"), nil
		}
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return nil, model.BadRequest("field '%s' must be %s, got '%s'", f.name, jsonKind(f.typ), raw)
		}
		return json.Marshal(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return nil, model.BadRequest("field '%s' must be %s, got '%s'", f.name, jsonKind(f.typ), raw)
		}
		return json.Marshal(n)
	}
	return json.Marshal(raw)
}

// readBody reads the request body within the server's size limit and
// returns it as a map of top-level JSON fields. It accepts JSON, real
// application/x-www-form-urlencoded bodies, and (as the OpenCrowbar seed's
// curl examples send) form encodings labelled application/json. Form values
// are typed by fs, and by refs for reference keys.
func readBody(r *http.Request, fs fieldSet, refs []Ref) (map[string]json.RawMessage, error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case mt == "", mt == "application/json", mt == "application/x-www-form-urlencoded",
		strings.HasPrefix(mt, "application/vnd.crowbar.") && strings.HasSuffix(mt, "+json"):
	default:
		return nil, statusError(http.StatusUnsupportedMediaType,
			fmt.Sprintf("content type '%s' is not supported; send application/json", mt))
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, err
		}
		return nil, model.BadRequest("cannot read request body: %v", err)
	}
	trimmed := bytes.TrimSpace(b)
	if len(trimmed) == 0 {
		return map[string]json.RawMessage{}, nil
	}
	// The shape decides, not the label: curl -d labels JSON as a form unless
	// told otherwise, and the seed sends forms labelled as JSON.
	if trimmed[0] != '{' && trimmed[0] != '[' && (mt == "application/x-www-form-urlencoded" || looksLikeForm(trimmed)) {
		return formBody(string(trimmed), fs, refs)
	}
	var m map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(&m); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return nil, model.BadRequest("request body must be a JSON object, not %s", ute.Value)
		}
		return nil, model.BadRequest("malformed JSON in request body: %v", err)
	}
	if dec.More() {
		return nil, model.BadRequest("malformed JSON in request body: data after the object")
	}
	if m == nil {
		return nil, model.BadRequest("request body must be a JSON object, not null")
	}
	return m, nil
}

// looksLikeForm reports whether b is a plausible form encoding: key=value
// pairs joined by '&' with keys made of name characters.
func looksLikeForm(b []byte) bool {
	for _, pair := range bytes.Split(b, []byte("&")) {
		k, _, ok := bytes.Cut(pair, []byte("="))
		if !ok || len(k) == 0 {
			return false
		}
		for _, c := range k {
			if !(c == '_' || c == '-' || c == '.' || c == '[' || c == ']' || c == '%' ||
				c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				return false
			}
		}
	}
	return true
}

func formBody(s string, fs fieldSet, refs []Ref) (map[string]json.RawMessage, error) {
	vals, err := url.ParseQuery(s)
	if err != nil {
		return nil, model.BadRequest("malformed form body: %v", err)
	}
	out := make(map[string]json.RawMessage, len(vals))
	for k, v := range vals {
		if len(v) != 1 {
			return nil, model.BadRequest("field '%s' is given %d times", k, len(v))
		}
		if ref := findRef(refs, k); ref != nil {
			out[k], _ = json.Marshal(v[0])
			continue
		}
		f, ok := fs[k]
		if !ok {
			out[k], _ = json.Marshal(v[0]) // reported as unknown by the caller
			continue
		}
		if out[k], err = formValue(f, v[0]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func findRef(refs []Ref, key string) *Ref {
	for i := range refs {
		if refs[i].Key == key {
			return &refs[i]
		}
	}
	return nil
}

// typeError rewrites a json decoding error into a message naming the field.
func typeError(err error, fs fieldSet) error {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) {
		name := ute.Field
		if i := strings.LastIndex(name, "."); i >= 0 {
			name = name[i+1:]
		}
		want := ute.Type.String()
		if f, ok := fs[name]; ok {
			want = jsonKind(f.typ)
		}
		return model.BadRequest("field '%s' must be %s, not %s", name, want, ute.Value)
	}
	return model.BadRequest("invalid request body: %v", err)
}

// jsonString reads a JSON string or number as a string key.
func jsonString(raw json.RawMessage, out *string) error {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case string:
		*out = x
	case float64:
		*out = strconv.FormatInt(int64(x), 10)
	default:
		return fmt.Errorf("not a string")
	}
	return nil
}

// decodeStrict reads a request body into v (a pointer to a struct) with the
// same rules as resources: JSON or form, unknown fields refused, values
// typed by field.
func decodeStrict(r *http.Request, v any) error {
	fs := fieldsOf(reflect.TypeOf(v).Elem())
	body, err := readBody(r, fs, nil)
	if err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(body)) {
		if _, ok := fs[k]; !ok {
			return model.BadRequest("unknown field '%s'; fields: %s", k, strings.Join(slices.Sorted(maps.Keys(fs)), ", "))
		}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return typeError(err, fs)
	}
	return nil
}

// readOne reads a body that must hold exactly the field key, as
// {"value": …} or {"node": …}: another field is a 400, a missing one a 422.
func readOne(r *http.Request, key string, fs fieldSet, refs []Ref) (json.RawMessage, error) {
	body, err := readBody(r, fs, refs)
	if err != nil {
		return nil, err
	}
	for k := range body {
		if k != key {
			return nil, model.BadRequest("unknown field '%s'; send {\"%s\": …}", k, key)
		}
	}
	raw, ok := body[key]
	if !ok {
		return nil, model.Invalid(key, "is required")
	}
	return raw, nil
}
