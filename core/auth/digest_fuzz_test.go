package auth_test

import (
	"testing"

	"github.com/crowbar-go/crowbar/core/auth"
)

// FuzzParseDigest: any Authorization header is parsed or refused without
// a panic, and throttling reads its user name the same way.
func FuzzParseDigest(f *testing.F) {
	for _, s := range []string{
		`Digest username="admin", realm="crowbar", nonce="abc", uri="/api/v2/nodes", qop=auth, nc=00000001, cnonce="c", response="d", algorithm=SHA-256`,
		`Digest username="a\"b", realm=crowbar`, `Digest `, `Digest username=`, `Digest ,,,=,"`, `Bearer x`, `Digest username="unterminated`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		c, err := auth.ParseDigest(header)
		user := auth.DigestUsername(header)
		if err == nil && len(header) > 7 && header[:7] == "Digest " && user != c["username"] {
			t.Fatalf("DigestUsername %q, ParseDigest username %q", user, c["username"])
		}
	})
}
