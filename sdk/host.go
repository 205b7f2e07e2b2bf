//go:build wasip1

package sdk

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Level is a log level.
type Level uint32

// Log levels.
const (
	LevelTrace Level = iota
	LevelDebug
	LevelInfo
	LevelWarn
	LevelError
)

// Log writes a structured line into the server's log, tagged with the
// barclamp: Log(sdk.LevelInfo, "allocated", "node", n, "address", a).
func Log(level Level, msg string, kv ...any) {
	fields := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		fields[fmt.Sprint(kv[i])] = kv[i+1]
	}
	b, _ := json.Marshal(map[string]any{"msg": msg, "fields": fields})
	hostLog(uint32(level), ptrOf(b), uint32(len(b)))
	keepAlive(b)
}

// APIError is a core API answer with a status of 400 or more.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("core API answered %d: %s", e.Status, e.Message)
}

// API calls the core API (paths such as "/api/v2/nodes/a.example.com") in
// process, under the barclamp's own identity. body is marshalled to JSON
// unless nil; the reply body is returned raw.
func API(method, path string, body any) (status int, reply json.RawMessage, err error) {
	req := map[string]any{"method": method, "path": path}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		req["body"] = json.RawMessage(b)
	}
	var ans struct {
		Status int             `json:"status"`
		Body   json.RawMessage `json:"body"`
		Error  string          `json:"error"`
	}
	if err := callHost(hostAPI, req, &ans); err != nil {
		return 0, nil, err
	}
	if ans.Error != "" {
		return 0, nil, errors.New(ans.Error)
	}
	return ans.Status, ans.Body, nil
}

// APIJSON calls the core API and decodes a successful reply into out (which
// may be nil); a status of 400 or more is an *APIError.
func APIJSON(method, path string, body, out any) error {
	status, reply, err := API(method, path, body)
	if err != nil {
		return err
	}
	if status >= 400 {
		var e struct {
			Message string `json:"message"`
		}
		json.Unmarshal(reply, &e) //nolint:errcheck
		return &APIError{Status: status, Message: e.Message}
	}
	if out != nil && len(reply) > 0 {
		return json.Unmarshal(reply, out)
	}
	return nil
}

// Entry is one key of the barclamp's private store.
type Entry struct {
	Key      string `json:"key"`
	Value    []byte `json:"value"`
	Revision int64  `json:"revision"`
}

type kvAnswer struct {
	Found    bool    `json:"found"`
	OK       bool    `json:"ok"`
	Value    []byte  `json:"value"`
	Revision int64   `json:"revision"`
	Entries  []Entry `json:"entries"`
	Error    string  `json:"error"`
}

func kvCall(fn func(p, n uint32) uint64, req map[string]any) (*kvAnswer, error) {
	var ans kvAnswer
	if err := callHost(fn, req, &ans); err != nil {
		return nil, err
	}
	if ans.Error != "" {
		return nil, errors.New(ans.Error)
	}
	return &ans, nil
}

// KVGet reads key from the barclamp's private store. found is false when
// the key does not exist (revision 0).
func KVGet(key string) (value []byte, revision int64, found bool, err error) {
	a, err := kvCall(hostKVGet, map[string]any{"key": key})
	if err != nil {
		return nil, 0, false, err
	}
	return a.Value, a.Revision, a.Found, nil
}

// KVCompareAndSwap writes value under key only if the key's revision is
// expected (0: only if the key does not exist yet). Of concurrent writers
// expecting the same revision exactly one gets ok; the others re-read and
// retry or give up. This is how unique allocations are made.
func KVCompareAndSwap(key string, value []byte, expected int64) (revision int64, ok bool, err error) {
	a, err := kvCall(hostKVCAS, map[string]any{"key": key, "value": value, "expected": expected})
	if err != nil {
		return 0, false, err
	}
	return a.Revision, a.OK, nil
}

// KVList returns the entries whose key starts with prefix, in key order.
func KVList(prefix string) ([]Entry, error) {
	a, err := kvCall(hostKVList, map[string]any{"prefix": prefix})
	if err != nil {
		return nil, err
	}
	return a.Entries, nil
}

// KVDelete removes key if its revision is expected (0: whatever it is).
func KVDelete(key string, expected int64) (bool, error) {
	a, err := kvCall(hostKVDelete, map[string]any{"key": key, "expected": expected})
	if err != nil {
		return false, err
	}
	return a.OK, nil
}
