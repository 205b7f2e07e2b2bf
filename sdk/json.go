package sdk

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// appendJSON appends v as encoding/json's Marshal writes it, for the
// values a handler builds by hand or decodes into `any`: nil, bool,
// string, float64, the int types, map[string]any, map[string]string,
// []any and []string, nested. Anything else (a struct, a json.Marshaler,
// NaN) answers false and the caller uses encoding/json. Inside WebAssembly
// encoding/json's reflection is what a small JSON answer costs (issue 17);
// FuzzAppendJSON keeps both byte for byte the same.
func appendJSON(b []byte, v any) ([]byte, bool) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), true
	case bool:
		return strconv.AppendBool(b, v), true
	case string:
		return appendJSONString(b, v), true
	case float64:
		return appendJSONFloat(b, v)
	case int:
		return strconv.AppendInt(b, int64(v), 10), true
	case int64:
		return strconv.AppendInt(b, v, 10), true
	case int32:
		return strconv.AppendInt(b, int64(v), 10), true
	case uint64:
		return strconv.AppendUint(b, v, 10), true
	case []any:
		return appendJSONArray(b, v, appendJSON)
	case []string:
		return appendJSONArray(b, v, appendJSONStringOK)
	case map[string]any:
		return appendJSONObject(b, v, appendJSON)
	case map[string]string:
		return appendJSONObject(b, v, appendJSONStringOK)
	}
	return b, false
}

// appendJSONArray writes a slice (nil is null) with elem for each element.
func appendJSONArray[E any](b []byte, v []E, elem func([]byte, E) ([]byte, bool)) ([]byte, bool) {
	if v == nil {
		return append(b, "null"...), true
	}
	b = append(b, '[')
	for i, e := range v {
		if i > 0 {
			b = append(b, ',')
		}
		var ok bool
		if b, ok = elem(b, e); !ok {
			return b, false
		}
	}
	return append(b, ']'), true
}

// appendJSONObject writes a map (nil is null) with its keys sorted, as
// encoding/json does, and value for each value.
func appendJSONObject[V any](b []byte, m map[string]V, value func([]byte, V) ([]byte, bool)) ([]byte, bool) {
	if m == nil {
		return append(b, "null"...), true
	}
	b = append(b, '{')
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b = append(b, ',')
		}
		var ok bool
		if b, ok = value(append(appendJSONString(b, k), ':'), m[k]); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

func appendJSONStringOK(b []byte, s string) ([]byte, bool) { return appendJSONString(b, s), true }

// appendJSONFloat writes f the way encoding/json does: the shortest
// decimal that reads back as f, in exponent form only below 1e-6 or from
// 1e21 up, with a one-digit negative exponent not zero-padded. NaN and
// the infinities are not JSON.
func appendJSONFloat(b []byte, f float64) ([]byte, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return b, false
	}
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-07 → e-7
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, true
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as encoding/json does by default: control
// characters, quotes, backslashes and the HTML-sensitive <, > and & are
// escaped, so are U+2028 and U+2029, and invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	from := 0 // s[from:i] is still to be copied as is
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[from:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			from = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(append(b, s[from:i]...), `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(append(b, s[from:i]...), '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		from = i
	}
	return append(append(b, s[from:]...), '"')
}
