package model

import (
	"strconv"
	"strings"
	"testing"
)

// FuzzValidFQDN: the check never panics, and what it accepts is a name
// DNS and URLs take as is: at most 253 bytes, two or more labels of 1-63
// lower-case letters, digits and inner hyphens, never a numeric id.
func FuzzValidFQDN(f *testing.F) {
	for _, s := range []string{"newtest.cr0wbar.com", "78e3be198029.smoke.test", "localhost", "a..b", "-a.b", "a.b-", "ÄÖ.example.com",
		strings.Repeat("a", 64) + ".com", "9bad.example.com", "1.2", "", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidFQDN("name", name) != nil {
			return
		}
		if len(name) > 253 || !strings.Contains(name, ".") {
			t.Fatalf("accepted %q", name)
		}
		if _, err := strconv.ParseInt(name, 10, 64); err == nil {
			t.Fatalf("accepted the numeric %q", name)
		}
		for _, l := range strings.Split(name, ".") {
			if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' || strings.ToLower(l) != l {
				t.Fatalf("accepted %q with label %q", name, l)
			}
		}
	})
}

// FuzzValidName: accepted names are non-empty, start with a letter or _,
// and need no escaping in a URL path.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"system", "crowbar-managed-node", "_x", "9lives", "a b", "a/b", "", "ümlaut"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidName("name", name) != nil {
			return
		}
		if name == "" || len(name) > 255 || (name[0] >= '0' && name[0] <= '9') || strings.ContainsAny(name, "/?#% \t\n") {
			t.Fatalf("accepted %q", name)
		}
	})
}
