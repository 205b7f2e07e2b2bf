package model

import (
	"bytes"
	"database/sql/driver"
	"encoding/json"
	"fmt"
	"reflect"
)

// JSON is a JSON document kept in a text column. The zero value stores and
// renders as an empty object.
type JSON json.RawMessage

// EmptyObject is the JSON document {}.
var EmptyObject = JSON("{}")

// Value implements driver.Valuer.
func (j JSON) Value() (driver.Value, error) {
	if len(j) == 0 {
		return "{}", nil
	}
	return string(j), nil
}

// Scan implements sql.Scanner.
func (j *JSON) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*j = nil
	case string:
		*j = JSON(v)
	case []byte:
		*j = append(JSON(nil), v...)
	default:
		return fmt.Errorf("model.JSON: cannot scan %T", src)
	}
	return nil
}

// MarshalJSON renders the document itself (never a base64 string).
func (j JSON) MarshalJSON() ([]byte, error) {
	if len(j) == 0 {
		return []byte("{}"), nil
	}
	return j, nil
}

// UnmarshalJSON keeps a compacted copy of the document, which must be an
// object; null stands for the empty object.
func (j *JSON) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*j = EmptyObject
		return nil
	}
	if len(b) == 0 || b[0] != '{' {
		return &json.UnmarshalTypeError{Value: jsonValueKind(b), Type: reflect.TypeOf(*j)}
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return err
	}
	*j = JSON(buf.Bytes())
	return nil
}

func jsonValueKind(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '"':
		return "string"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	}
	return "number"
}

// Value is any JSON value (an attrib's default, for example) kept in a text
// column; the zero value is null.
type Value json.RawMessage

// Value implements driver.Valuer.
func (v Value) Value() (driver.Value, error) {
	if len(v) == 0 {
		return "null", nil
	}
	return string(v), nil
}

// Scan implements sql.Scanner.
func (v *Value) Scan(src any) error { return (*JSON)(v).Scan(src) }

// MarshalJSON renders the value itself.
func (v Value) MarshalJSON() ([]byte, error) {
	if len(v) == 0 {
		return []byte("null"), nil
	}
	return v, nil
}

// UnmarshalJSON keeps a compacted copy of the value.
func (v *Value) UnmarshalJSON(b []byte) error {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return err
	}
	*v = Value(buf.Bytes())
	return nil
}

// GormDataType tells gorm the column holds text.
func (Value) GormDataType() string { return "text" }

// GormDataType tells gorm the column holds text.
func (JSON) GormDataType() string { return "text" }

// StringList is a list of strings kept as a JSON array in a text column.
type StringList []string

// Value implements driver.Valuer.
func (l StringList) Value() (driver.Value, error) {
	if l == nil {
		return "[]", nil
	}
	b, err := json.Marshal([]string(l))
	return string(b), err
}

// Scan implements sql.Scanner.
func (l *StringList) Scan(src any) error {
	var b []byte
	switch v := src.(type) {
	case nil:
		*l = nil
		return nil
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return fmt.Errorf("model.StringList: cannot scan %T", src)
	}
	return json.Unmarshal(b, (*[]string)(l))
}

// MarshalJSON renders nil as [].
func (l StringList) MarshalJSON() ([]byte, error) {
	if l == nil {
		return []byte("[]"), nil
	}
	return json.Marshal([]string(l))
}

// GormDataType tells gorm the column holds text.
func (StringList) GormDataType() string { return "text" }
