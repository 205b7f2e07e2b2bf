package nodetest

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/agent/agenttest"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
)

// signed returns a token signed with the server's own key, with claims.
func signed(t *testing.T, s *apitest.Server, claims jwt.MapClaims) string {
	t.Helper()
	pemKey, err := auth.LoadOrCreateSecret(context.Background(), s.Store.DB, "jwt-signing-key", auth.GenerateSigningKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := auth.ParseSigningKey(pemKey)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// raw is a plain Redis client on the agent, without the core0 client's help.
func raw(addr, password string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Password: password, Protocol: 2, DisableIdentity: true,
		MaxRetries: -1, TLSConfig: &tls.Config{InsecureSkipVerify: true}}) //nolint:gosec // a test agent's self-signed certificate
}

// TestAgentRefusesBadCredentials: without a good AUTH nothing runs.
func TestAgentRefusesBadCredentials(t *testing.T) {
	agenttest.Require(t)
	st := storetest.Open(t, filepath.Join(t.TempDir(), "crowbar.db"))
	s := server(t, st)
	ag := s.StartAgent()
	now := time.Now()
	marker := filepath.Join(t.TempDir(), "ran")
	push := `{"id": "p1", "command": "core.system", "arguments": {"name": "touch", "args": ["` + marker + `"]}}`
	s.AddUser("reader", "reader-password", auth.RoleReader, true)
	s.AddUser("operator", "operator-password", auth.RoleOperator, true)
	reader, _, _ := s.Auth.MintToken(&auth.Caller{Username: "reader", Role: auth.RoleReader}, time.Hour)
	operator, _, _ := s.Auth.MintToken(&auth.Caller{Username: "operator", Role: auth.RoleOperator}, time.Hour)

	cases := []struct {
		name, password, want string
	}{
		{"no AUTH", "", "NOAUTH"},
		{"not a JWT", "hunter2", "WRONGPASS"},
		{"expired", signed(t, s, jwt.MapClaims{"sub": "admin", "role": "admin", "iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()}), "expired"},
		{"valid for over an hour", signed(t, s, jwt.MapClaims{"sub": "admin", "role": "admin", "iat": now.Unix(), "exp": now.Add(3601 * time.Second).Unix()}), "3600"},
		{"no exp", signed(t, s, jwt.MapClaims{"sub": "admin", "role": "admin"}), "exp"},
		{"no role", signed(t, s, jwt.MapClaims{"sub": "admin", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}), "no role"},
		{"a reader", reader, "reader role"},
		{"signed by another key", otherKeyToken(t), "signature"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := raw(ag.Addr, tc.password)
			defer c.Close()
			err := c.Do(context.Background(), "RPUSH", core0.Queue, push).Err()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("RPUSH answered %v, want an error containing %q", err, tc.want)
			}
			if err := c.Do(context.Background(), "LKEYEXISTS", "result:p1:flag").Err(); err == nil {
				t.Fatal("a read was answered without a good AUTH")
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a command ran without a good AUTH")
	}

	t.Run("an operator may command", func(t *testing.T) {
		c := raw(ag.Addr, operator)
		defer c.Close()
		if err := c.Do(context.Background(), "RPUSH", core0.Queue, push).Err(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { _, err := os.Stat(marker); return err == nil })
	})
	t.Run("an expired session must AUTH again", func(t *testing.T) {
		short := signed(t, s, jwt.MapClaims{"sub": "admin", "role": "admin", "iat": now.Unix(), "exp": time.Now().Add(time.Second).Unix()})
		c := raw(ag.Addr, short)
		defer c.Close()
		if err := c.Ping(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1100 * time.Millisecond)
		if err := c.Ping(context.Background()).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
			t.Fatalf("after the token expired: %v", err)
		}
	})
	t.Run("plain TCP against TLS", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", ag.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
		conn.Write([]byte("*1\r\n$4\r\nPING\r\n"))        //nolint:errcheck
		buf := make([]byte, 64)
		n, err := conn.Read(buf)
		if strings.Contains(string(buf[:n]), "PONG") || err == nil && n > 0 && buf[0] == '+' {
			t.Fatalf("a plain-text client was answered: %q", buf[:n])
		}
	})
	t.Run("the core0 client names the node when refused", func(t *testing.T) {
		c := core0.New(core0.Options{Node: ag.Node.Name, Addr: ag.Addr, Fingerprint: ag.Fingerprint(),
			Password: func(context.Context) (string, error) { return reader, nil }})
		defer c.Close()
		err := c.Ping(context.Background())
		if !errors.Is(err, core0.ErrAuthRefused) || !strings.Contains(err.Error(), ag.Node.Name) {
			t.Fatalf("ping with a reader's token: %v", err)
		}
	})
	t.Run("a wrong pinned fingerprint is refused", func(t *testing.T) {
		c := core0.New(core0.Options{Node: ag.Node.Name, Addr: ag.Addr, Fingerprint: strings.Repeat("ab", 32),
			Password: func(context.Context) (string, error) { return operator, nil }})
		defer c.Close()
		err := c.Ping(context.Background())
		if !errors.Is(err, core0.ErrUnreachable) || !strings.Contains(err.Error(), "fingerprint") {
			t.Fatalf("ping with a wrong pin: %v", err)
		}
	})
}

// otherKeyToken is a well-formed admin token signed by a key the agent
// does not trust.
func otherKeyToken(t *testing.T) string {
	pemKey, err := auth.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	key, _ := auth.ParseSigningKey(pemKey)
	now := time.Now()
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"sub": "admin", "role": "admin",
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}).SignedString(key)
	return tok
}
