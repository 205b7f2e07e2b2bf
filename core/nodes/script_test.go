package nodes

import "testing"

// TestRunlogReplace: when a script's stream ends early or lags behind its
// result, the run log is what the agent captured — every line, the wall
// line left out — not the lines streamed so far (CI once saw a probe's
// stderr line missing).
func TestRunlogReplace(t *testing.T) {
	l := &runlog{marker: "crowbar-wall-x:"}
	l.add("probing n1")
	l.replace("probing n1\n\ncrowbar-wall-x:{\"a\":1}\n", "the greeting is hello\n")
	if got, want := l.String(), "probing n1\n\nthe greeting is hello"; got != want {
		t.Fatalf("run log %q, want %q", got, want)
	}
	l.replace("", "")
	if got := l.String(); got != "" {
		t.Fatalf("nothing captured: run log %q, want empty", got)
	}
}
