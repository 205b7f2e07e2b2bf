package agent

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzReadCommand: the agent reads whatever is pushed onto core:default
// without a panic; a command it accepts has its id, and one it cannot read
// is answered under an id only when the push really names it.
func FuzzReadCommand(f *testing.F) {
	f.Add([]byte(`{"id":"j1","command":"core.ping","arguments":{}}`))
	f.Add([]byte(`{"id":"j2","command":"bash","arguments":{"script":"echo hi"},"queue":"q","max_time":5}`))
	f.Add([]byte(`{"id": "broken", "command": `))
	f.Add([]byte(`not json at all`))
	f.Add([]byte(`{"command":"core.ping"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		cmd, id, err := readCommand(raw)
		switch {
		case err == nil:
			if id == "" || cmd.ID != id || !json.Valid(raw) {
				t.Fatalf("accepted %q with id %q (command id %q)", raw, id, cmd.ID)
			}
		case id != "":
			if len(id) > 200 || !bytes.Contains(raw, []byte(id)) {
				t.Fatalf("an unreadable push %q answered under id %q", raw, id)
			}
		}
	})
}
