package auth_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

func benchService(b *testing.B) *auth.Service {
	st := storetest.Open(b, filepath.Join(b.TempDir(), "c.db"))
	svc, err := auth.New(context.Background(), st.DB, auth.Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	u := &model.User{Username: "admin", Role: "admin", APIAccess: true}
	svc.SetPassword(u, "admin-password")
	if err := st.DB.Create(u).Error; err != nil {
		b.Fatal(err)
	}
	return svc
}

// BenchmarkDigestVerify: one Digest check per request, including the user
// lookup in SQLite.
func BenchmarkDigestVerify(b *testing.B) {
	for _, alg := range []string{auth.MD5, auth.SHA256} {
		b.Run(alg, func(b *testing.B) {
			svc := benchService(b)
			var challenge string
			for _, c := range svc.Challenges(false) {
				if p, _ := auth.ParseDigest(c); p["algorithm"] == alg {
					challenge = c
				}
			}
			p, _ := auth.ParseDigest(challenge)
			ha1 := auth.HA1(alg, "admin", p["realm"], "admin-password")
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				nc := fmt.Sprintf("%08x", i+1)
				resp := auth.Response(alg, ha1, p["nonce"], nc, "c", "GET", "/api/v2/nodes")
				h := fmt.Sprintf(`Digest username="admin", realm=%q, nonce=%q, uri="/api/v2/nodes", qop=auth, nc=%s, cnonce="c", response=%q, algorithm=%s`,
					p["realm"], p["nonce"], nc, resp, alg)
				if _, err := svc.Authenticate(context.Background(), "GET", "/api/v2/nodes", h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkJWTVerify: one ES256 bearer check per request, including the
// user lookup in SQLite.
func BenchmarkJWTVerify(b *testing.B) {
	svc := benchService(b)
	tok, _, err := svc.MintToken(&auth.Caller{Username: "admin"}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := svc.Authenticate(context.Background(), "GET", "/api/v2/nodes", "Bearer "+tok); err != nil {
			b.Fatal(err)
		}
	}
}
