package sdk

import (
	"encoding/binary"
	"errors"
	"sort"
)

// HTTPFrame is an HTTP request or answer in the binary envelope the host
// and the SDK use for route calls (docs/abi.md, "The HTTP frame"): fields
// as length-prefixed bytes instead of JSON, the body as is, so a call
// spends no reflection and no base64 on it. Authors never need it; the
// host and the SDK share it so both ends agree byte for byte.
type HTTPFrame struct {
	Status                               int
	Method, Path, Host, Advertise, Route string
	Params                               map[string]string
	Query, Headers                       map[string][]string
	// HasCaller says whether the caller fields are set (open routes have
	// no caller).
	HasCaller                            bool
	CallerUser, CallerRole, CallerScheme string
	Body                                 []byte
}

// frameMagic starts every frame: the envelope's version.
const frameMagic = "CBF1"

var errFrame = errors.New("malformed HTTP frame")

// AppendRequest appends the request fields of f to b.
func (f *HTTPFrame) AppendRequest(b []byte) []byte {
	b = append(b, frameMagic...)
	for _, s := range []string{f.Method, f.Path, f.Host, f.Advertise, f.Route} {
		b = appendString(b, s)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(f.Params)))
	for _, k := range sortedKeys(f.Params) {
		b = appendString(appendString(b, k), f.Params[k])
	}
	b = appendMulti(b, f.Query)
	b = appendMulti(b, f.Headers)
	if f.HasCaller {
		b = append(b, 1)
		b = appendString(appendString(appendString(b, f.CallerUser), f.CallerRole), f.CallerScheme)
	} else {
		b = append(b, 0)
	}
	return appendBytes(b, f.Body)
}

// AppendResponse appends the answer fields of f (status, headers, body).
func (f *HTTPFrame) AppendResponse(b []byte) []byte {
	b = append(b, frameMagic...)
	b = binary.LittleEndian.AppendUint32(b, uint32(f.Status))
	b = appendMulti(b, f.Headers)
	return appendBytes(b, f.Body)
}

// ReadRequest fills f's request fields from b; Body aliases b.
func (f *HTTPFrame) ReadRequest(b []byte) error {
	r := frameReader{b: b}
	r.magic()
	for _, p := range []*string{&f.Method, &f.Path, &f.Host, &f.Advertise, &f.Route} {
		*p = r.str()
	}
	if n := r.count(); n > 0 {
		f.Params = make(map[string]string, n)
		for i := 0; i < n && r.err == nil; i++ {
			k := r.str()
			f.Params[k] = r.str()
		}
	}
	f.Query, f.Headers = r.multi(), r.multi()
	if f.HasCaller = r.u8() == 1; f.HasCaller {
		f.CallerUser, f.CallerRole, f.CallerScheme = r.str(), r.str(), r.str()
	}
	f.Body = r.bytes()
	return r.end()
}

// ReadResponse fills f's answer fields from b; Body aliases b.
func (f *HTTPFrame) ReadResponse(b []byte) error {
	r := frameReader{b: b}
	r.magic()
	f.Status = int(r.u32())
	f.Headers = r.multi()
	f.Body = r.bytes()
	return r.end()
}

func appendString(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func appendBytes(b, v []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// appendMulti writes a map of lists in key order, so a frame's bytes do
// not depend on map iteration.
func appendMulti(b []byte, m map[string][]string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(m)))
	for _, k := range sortedKeys(m) {
		b = appendString(b, k)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(m[k])))
		for _, v := range m[k] {
			b = appendString(b, v)
		}
	}
	return b
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// frameReader reads a frame; the first fault sticks and later reads
// return zero values.
type frameReader struct {
	b   []byte
	err error
}

func (r *frameReader) take(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		r.err = errFrame
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *frameReader) magic() {
	if string(r.take(len(frameMagic))) != frameMagic && r.err == nil {
		r.err = errFrame
	}
}

func (r *frameReader) u32() uint32 {
	v := r.take(4)
	if v == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(v)
}

func (r *frameReader) u8() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

// count reads an element count, refusing one the rest of the frame cannot
// hold (each element takes at least four bytes).
func (r *frameReader) count() int {
	n := int(r.u32())
	if n > len(r.b)/4 {
		r.err = errFrame
		return 0
	}
	return n
}

func (r *frameReader) str() string { return string(r.take(int(r.u32()))) }

func (r *frameReader) bytes() []byte { return r.take(int(r.u32())) }

func (r *frameReader) multi() map[string][]string {
	n := r.count()
	if n == 0 {
		return nil
	}
	m := make(map[string][]string, n)
	for i := 0; i < n && r.err == nil; i++ {
		k := r.str()
		vals := make([]string, r.count())
		for j := range vals {
			vals[j] = r.str()
		}
		m[k] = vals
	}
	return m
}

func (r *frameReader) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = errFrame
	}
	return r.err
}
