package auth_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

func TestInstallKeyLifecycle(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		svc, err := auth.New(ctx, st.DB, auth.Config{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "keys", "crowbar.install.key")
		step := func(reset bool, want auth.InstallKeyResult) string {
			t.Helper()
			got, err := svc.EnsureInstallKey(ctx, path, reset)
			if err != nil || got != want {
				t.Fatalf("EnsureInstallKey(reset=%v) = %v, %v; want %v", reset, got, err, want)
			}
			b, _ := os.ReadFile(path)
			return string(b)
		}
		first := step(false, auth.KeyCreated)
		user, pass, ok := strings.Cut(strings.TrimSpace(first), ":")
		if !ok || user != auth.InstallUser || len(pass) < 24 {
			t.Fatalf("install key %q", first)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Fatalf("install key mode %v, want 0600", fi.Mode().Perm())
		}
		var u model.User
		st.DB.Where("username = ?", user).Take(&u)
		if u.Role != "admin" || !u.APIAccess || u.HA1MD5 != auth.HA1(auth.MD5, user, "crowbar", pass) || u.HA1SHA256 == "" {
			t.Fatalf("install user %+v", u)
		}
		if again := step(false, auth.KeyKept); again != first {
			t.Fatalf("a later start rewrote the key")
		}
		rotated := step(true, auth.KeyRotated)
		if rotated == first {
			t.Fatalf("--reset-admin-key did not change the key")
		}
		// A new database with the old key file: the user comes back from it.
		st.DB.Where("username = ?", user).Delete(&model.User{})
		if step(false, auth.KeyRestored) != rotated {
			t.Fatalf("restoring the user rewrote the key")
		}
		os.Remove(path)
		step(false, auth.KeyMissing)
		if _, err := os.Stat(path); err == nil {
			t.Fatalf("a missing key was silently re-created for an existing user")
		}
	})
}

func TestSecretsAreSharedBetweenServices(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		a, err := auth.New(context.Background(), st.DB, auth.Config{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, err := auth.New(context.Background(), st.DB, auth.Config{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := a.MintToken(&auth.Caller{Username: "x"}, 60e9)
		if err != nil {
			t.Fatal(err)
		}
		// A replica verifies what another minted: same signing key. The
		// subject is unknown, so the answer is Forbidden, not a bad signature.
		_, err = b.Authenticate(context.Background(), "GET", "/", "Bearer "+tok)
		if e, ok := auth.AsError(err); !ok || e.Kind != auth.Forbidden {
			t.Fatalf("replica verifying a minted token: %v", err)
		}
	})
}

func TestParseDigest(t *testing.T) {
	c, err := auth.ParseDigest(`Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS", userhash=false`)
	if err != nil {
		t.Fatal(err)
	}
	if c["username"] != "Mufasa" || c["algorithm"] != "SHA-256" || c["nc"] != "00000001" || c["qop"] != "auth" || c["userhash"] != "false" {
		t.Fatalf("parsed %v", c)
	}
	// RFC 7616 §3.9.1's worked example.
	ha1 := auth.HA1(auth.SHA256, "Mufasa", "http-auth@example.org", "Circle of Life")
	if got := auth.Response(auth.SHA256, ha1, c["nonce"], c["nc"], c["cnonce"], "GET", c["uri"]); got != c["response"] {
		t.Fatalf("response %s, want the RFC's %s", got, c["response"])
	}
	if c, _ := auth.ParseDigest(`Digest username="a\"b", realm="r"`); c["username"] != `a"b` {
		t.Fatalf("escaped quote: %v", c)
	}
	for _, bad := range []string{`Basic abc`, `Digest username="unterminated`, `Digest =x`} {
		if _, err := auth.ParseDigest(bad); err == nil {
			t.Errorf("ParseDigest(%q) accepted", bad)
		}
	}
}

func TestPermits(t *testing.T) {
	cases := []struct {
		role   auth.Role
		method string
		users  bool
		ok     bool
	}{
		{auth.RoleAdmin, "DELETE", true, true},
		{auth.RoleOperator, "DELETE", false, true},
		{auth.RoleOperator, "GET", true, false},
		{auth.RoleReader, "GET", false, true},
		{auth.RoleReader, "HEAD", false, true},
		{auth.RoleReader, "PUT", false, false},
		{auth.RoleReader, "GET", true, false},
	}
	for _, c := range cases {
		err := auth.Permits(&auth.Caller{Username: "u", Role: c.role}, c.method, c.users)
		if (err == nil) != c.ok {
			t.Errorf("%s %s users=%v: %v", c.role, c.method, c.users, err)
		}
	}
}
