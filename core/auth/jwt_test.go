package auth_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/golang-jwt/jwt/v5"
)

func pemOf(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Keys configured as PEM verify tokens of their algorithm, and only those.
func TestJWTKeysFromPEM(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	own, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var bundle []byte
	for _, pub := range []any{&rsaKey.PublicKey, edPub, &ecKey.PublicKey} {
		bundle = append(bundle, pemOf(t, pub)...)
	}
	keys, err := auth.ParsePublicKeys(bundle)
	if err != nil || len(keys) != 3 {
		t.Fatalf("ParsePublicKeys: %d keys, %v", len(keys), err)
	}
	secret := []byte("0123456789abcdef0123456789abcdef")
	v, err := auth.NewJWT(auth.JWTConfig{PublicKeys: keys, HMACSecret: secret, SigningKey: own})
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{"sub": "alice", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	cases := []struct {
		name   string
		method jwt.SigningMethod
		key    any
		ok     bool
	}{
		{"RS256", jwt.SigningMethodRS256, rsaKey, true},
		{"EdDSA", jwt.SigningMethodEdDSA, edPriv, true},
		{"ES256", jwt.SigningMethodES256, ecKey, true},
		{"HS256", jwt.SigningMethodHS256, secret, true},
		{"server's own", jwt.SigningMethodES256, own, true},
		{"RS256 unknown key", jwt.SigningMethodRS256, other, false},
	}
	for _, c := range cases {
		tok, err := jwt.NewWithClaims(c.method, claims).SignedString(c.key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Verify(tok)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		} else if c.ok && got.Subject != "alice" {
			t.Errorf("%s: subject %q", c.name, got.Subject)
		}
	}
	if _, err := auth.ParsePublicKeys([]byte("not pem")); err == nil {
		t.Errorf("garbage parsed as keys")
	}
	if _, err := auth.ParsePublicKeys(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})); err == nil {
		t.Errorf("a private key block was accepted as a public key")
	}
}
