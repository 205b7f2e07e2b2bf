package model

import (
	"bytes"
	"database/sql/driver"
	"encoding/json"
	"fmt"
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

// UnmarshalJSON keeps a compacted copy of the document.
func (j *JSON) UnmarshalJSON(b []byte) error {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return err
	}
	*j = JSON(buf.Bytes())
	return nil
}

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
