package sdk

import (
	"encoding/json"
	"math"
	"testing"
)

// sameAsEncodingJSON fails t unless appendJSON writes v exactly as
// encoding/json does, or declines it where encoding/json would fail.
func sameAsEncodingJSON(t *testing.T, v any) {
	t.Helper()
	want, werr := json.Marshal(v)
	got, ok := appendJSON([]byte("prefix"), v)
	if !ok {
		if werr == nil && acceptable(v) {
			t.Fatalf("appendJSON declined %#v, which it should write (%s)", v, want)
		}
		return
	}
	if werr != nil {
		t.Fatalf("appendJSON wrote %q for %#v, which encoding/json refuses: %v", got, v, werr)
	}
	if string(got) != "prefix"+string(want) {
		t.Fatalf("appendJSON(%#v)\n got %s\nwant %s", v, got[len("prefix"):], want)
	}
}

// acceptable: v is made only of the types appendJSON promises to write.
func acceptable(v any) bool {
	switch v := v.(type) {
	case nil, bool, string, int, int64, int32, uint64, []string, map[string]string:
		return true
	case float64:
		return !math.IsNaN(v) && !math.IsInf(v, 0)
	case []any:
		for _, e := range v {
			if !acceptable(e) {
				return false
			}
		}
		return true
	case map[string]any:
		for _, e := range v {
			if !acceptable(e) {
				return false
			}
		}
		return true
	}
	return false
}

// TestAppendJSON: the SDK's reply encoder writes what encoding/json writes
// for every value it takes on, and declines the rest (structs, NaN, byte
// slices) so that encoding/json handles them.
func TestAppendJSON(t *testing.T) {
	type point struct{ X int }
	for _, v := range []any{
		nil, true, false, "", "plain", `quote " back \ slash`, "<script>&amp;</script>", "tab\tnew\nline\rcr\b\f\x00\x1f\x7f",
		"caf\u00e9 \u2028 \u2029 \U0001F600", "bad \xff utf8 \xe2\x82", 0.0, math.Copysign(0, -1), 1.0, -2.5, 1e20, 1e21,
		123456789.0, 1e-6, 1e-7, 9.999e-7, 1.5e300, -1e-300, math.MaxFloat64, math.SmallestNonzeroFloat64, 0.1 + 0.2,
		42, int64(-7), int32(3), uint64(math.MaxUint64), []any{}, []any(nil), []string{"a", "<b>"}, []string(nil),
		map[string]any{}, map[string]any(nil), map[string]string{"z": "1", "a": "&"}, map[string]string(nil),
		map[string]any{"b": "two", "a": 1.0, "c": []any{1.0, 2.0, map[string]any{"\u00e9": nil}}, "name": "n1"},
	} {
		sameAsEncodingJSON(t, v)
	}
	for _, v := range []any{math.NaN(), math.Inf(1), []byte("x"), point{1}, []any{point{1}}, map[string]any{"p": point{1}},
		map[string]any{"n": math.Inf(-1)}, json.RawMessage(`{"a": 1}`), uint8(1)} {
		if _, ok := appendJSON(nil, v); ok {
			t.Errorf("appendJSON wrote %#v; it should leave it to encoding/json", v)
		}
	}
}

// FuzzAppendJSON: any JSON document decoded into `any`, and any string
// and float, encode to the same bytes both ways.
func FuzzAppendJSON(f *testing.F) {
	f.Add([]byte(`{"a":1,"b":"two","c":[1,2,3]}`), "x", 1.5)
	f.Add([]byte(`[null,true,1e-7,"\u2028<&>"]`), "\xff\xfe", 1e21)
	f.Add([]byte(`"\ud800"`), "\x00\"\\", -0.0)
	f.Fuzz(func(t *testing.T, doc []byte, s string, x float64) {
		var v any
		if json.Unmarshal(doc, &v) == nil {
			sameAsEncodingJSON(t, v)
		}
		sameAsEncodingJSON(t, s)
		sameAsEncodingJSON(t, map[string]any{s: x, "list": []any{s, x}})
		sameAsEncodingJSON(t, map[string]string{s: s})
	})
}
