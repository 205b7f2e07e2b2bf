package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MaxTokenValidity is the longest a bearer token may be valid for: the
// Zero-OS rule, so that a user removed from an organization loses access
// within the hour.
const MaxTokenValidity = time.Hour

// JWTConfig configures bearer-token verification.
type JWTConfig struct {
	// PublicKeys verify tokens signed by trusted issuers (ES256/ES384/RS256/EdDSA).
	PublicKeys []crypto.PublicKey
	// HMACSecret, when set, verifies HS256/HS384/HS512 tokens.
	HMACSecret []byte
	// SigningKey is the server's own key: it signs minted tokens and verifies
	// them. Without it the JWT only verifies (an agent holds only the
	// server's public key).
	SigningKey *ecdsa.PrivateKey
	// RequiredScope, when set, must be among the token's scopes
	// (e.g. "user:memberof:myorg", as ItsYou.online issues them).
	RequiredScope string
	// Issuer is put in minted tokens; default "crowbar".
	Issuer string
	Now    func() time.Time
}

// JWT verifies and mints bearer tokens.
type JWT struct {
	cfg     JWTConfig
	methods []string
}

// NewJWT returns a verifier for cfg.
func NewJWT(cfg JWTConfig) (*JWT, error) {
	if cfg.SigningKey == nil && len(cfg.PublicKeys) == 0 && len(cfg.HMACSecret) == 0 {
		return nil, errors.New("jwt: a signing key or a verification key is required")
	}
	if cfg.Issuer == "" {
		cfg.Issuer = "crowbar"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	methods := []string{"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "EdDSA"}
	if len(cfg.HMACSecret) > 0 {
		methods = append(methods, "HS256", "HS384", "HS512")
	}
	return &JWT{cfg: cfg, methods: methods}, nil
}

// Claims is what crowbar reads from a verified token.
type Claims struct {
	Subject string
	// Role is the role the token carries (minted tokens carry their user's
	// role at the time; nodes, which cannot look users up, act on it).
	Role      string
	Scopes    []string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// keys returns the verification keys that fit the token's algorithm.
func (j *JWT) keys(t *jwt.Token) (any, error) {
	var set []jwt.VerificationKey
	switch t.Method.(type) {
	case *jwt.SigningMethodHMAC:
		if len(j.cfg.HMACSecret) == 0 {
			return nil, errors.New("HMAC tokens are not accepted")
		}
		return j.cfg.HMACSecret, nil
	case *jwt.SigningMethodECDSA:
		if j.cfg.SigningKey != nil {
			set = append(set, &j.cfg.SigningKey.PublicKey)
		}
		for _, k := range j.cfg.PublicKeys {
			if ek, ok := k.(*ecdsa.PublicKey); ok {
				set = append(set, ek)
			}
		}
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
		for _, k := range j.cfg.PublicKeys {
			if rk, ok := k.(*rsa.PublicKey); ok {
				set = append(set, rk)
			}
		}
	case *jwt.SigningMethodEd25519:
		for _, k := range j.cfg.PublicKeys {
			if ek, ok := k.(ed25519.PublicKey); ok {
				set = append(set, ek)
			}
		}
	}
	if len(set) == 0 {
		return nil, fmt.Errorf("no key configured for %s tokens", t.Method.Alg())
	}
	return jwt.VerificationKeySet{Keys: set}, nil
}

// Verify checks a bearer token: signature by a trusted key, an exp claim,
// not expired and already valid, validity at most an hour (TokenTooLong
// otherwise), and the required scope (Forbidden when absent).
func (j *JWT) Verify(token string) (*Claims, error) {
	mc := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(token, mc, j.keys,
		jwt.WithValidMethods(j.methods),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(j.cfg.Now),
		jwt.WithLeeway(30*time.Second))
	if err != nil {
		switch {
		case errors.Is(err, jwt.ErrTokenExpired):
			return nil, fail(Unauthenticated, "bearer token has expired")
		case errors.Is(err, jwt.ErrTokenNotValidYet):
			return nil, fail(Unauthenticated, "bearer token is not valid yet")
		case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
			return nil, fail(Unauthenticated, "bearer token has no exp claim; tokens must expire")
		case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
			return nil, guess("bearer token signature is not valid or its algorithm is not accepted")
		}
		return nil, guess("bearer token is not valid: %v", err)
	}
	c := &Claims{}
	exp, _ := mc.GetExpirationTime()
	c.ExpiresAt = exp.Time
	start := j.cfg.Now()
	if iat, _ := mc.GetIssuedAt(); iat != nil {
		start = iat.Time
		c.IssuedAt = iat.Time
	}
	if v := c.ExpiresAt.Sub(start); v > MaxTokenValidity {
		return nil, fail(TokenTooLong, "bearer token is valid for %s; at most %s (3600 s) is accepted, so that revoked access ends within the hour",
			v.Round(time.Second), MaxTokenValidity)
	}
	c.Role = stringClaim(mc, "role")
	c.Subject = stringClaim(mc, "username")
	if c.Subject == "" {
		c.Subject = stringClaim(mc, "sub")
	}
	switch s := mc["scope"].(type) {
	case string:
		c.Scopes = strings.Fields(s)
	case []any:
		for _, v := range s {
			if str, ok := v.(string); ok {
				c.Scopes = append(c.Scopes, str)
			}
		}
	}
	if j.cfg.RequiredScope != "" && !c.HasScope(j.cfg.RequiredScope) {
		e := fail(Forbidden, "bearer token lacks the required scope %q", j.cfg.RequiredScope)
		e.User = c.Subject
		return nil, e
	}
	if c.Subject == "" {
		return nil, fail(Unauthenticated, "bearer token names no user (no username or sub claim)")
	}
	return c, nil
}

func stringClaim(mc jwt.MapClaims, name string) string {
	s, _ := mc[name].(string)
	return s
}

// HasScope reports whether the token carries scope.
func (c *Claims) HasScope(scope string) bool {
	for _, s := range c.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}

// Mint signs a token for username with role (may be empty) valid for
// validity (at most an hour), carrying the required scope when one is
// configured.
func (j *JWT) Mint(username, role string, validity time.Duration) (string, time.Time, error) {
	if j.cfg.SigningKey == nil {
		return "", time.Time{}, errors.New("jwt: this verifier has no signing key")
	}
	if validity <= 0 || validity > MaxTokenValidity {
		return "", time.Time{}, fmt.Errorf("validity must be between 1 and 3600 seconds")
	}
	now := j.cfg.Now()
	exp := now.Add(validity)
	claims := jwt.MapClaims{"sub": username, "username": username, "iss": j.cfg.Issuer,
		"iat": now.Unix(), "exp": exp.Unix()}
	if role != "" {
		claims["role"] = role
	}
	if j.cfg.RequiredScope != "" {
		claims["scope"] = []string{j.cfg.RequiredScope}
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodES256, claims).SignedString(j.cfg.SigningKey)
	return tok, time.Unix(exp.Unix(), 0), err
}

// PublicKeyPEM is the PEM "PUBLIC KEY" that verifies the tokens this JWT
// mints; agents receive it when they join.
func (j *JWT) PublicKeyPEM() (string, error) {
	if j.cfg.SigningKey == nil {
		return "", errors.New("jwt: this verifier has no signing key")
	}
	der, err := x509.MarshalPKIXPublicKey(&j.cfg.SigningKey.PublicKey)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// GenerateSigningKey makes a new P-256 key, PEM-encoded.
func GenerateSigningKey() (string, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})), nil
}

// ParseSigningKey reads a PEM EC private key.
func ParseSigningKey(s string) (*ecdsa.PrivateKey, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return nil, errors.New("signing key is not PEM")
	}
	return x509.ParseECPrivateKey(b.Bytes)
}

// ParsePublicKeys reads every public key (PKIX "PUBLIC KEY" or an X.509
// certificate) from PEM data.
func ParsePublicKeys(data []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		switch b.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(b.Bytes)
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
		case "RSA PUBLIC KEY":
			k, err := x509.ParsePKCS1PublicKey(b.Bytes)
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
		case "CERTIFICATE":
			cert, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, err
			}
			keys = append(keys, cert.PublicKey)
		default:
			return nil, fmt.Errorf("PEM block %q is not a public key", b.Type)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM public key found")
	}
	return keys, nil
}
