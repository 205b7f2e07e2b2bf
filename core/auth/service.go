package auth

import (
	"context"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/crowbar-go/crowbar/core/model"
	"github.com/hashicorp/go-hclog"
	"gorm.io/gorm"
)

// Config configures a Service.
type Config struct {
	Realm            string        // digest realm; default "crowbar"
	DigestAlgorithms []string      // default SHA-256, MD5
	NonceTTL         time.Duration // default 5 minutes
	JWTPublicKeys    []crypto.PublicKey
	JWTHMACSecret    []byte
	RequiredScope    string // e.g. user:memberof:myorg
	// DefaultRole, when set, lets a bearer token whose subject is not a
	// crowbar user in with this role (organization members).
	DefaultRole Role
	// UserCacheTTL is how long a user record is reused without a query
	// (default 5 s; negative disables the cache). A change made through this
	// server applies at once; other replicas see it within the TTL.
	UserCacheTTL time.Duration
	// Throttle slows down password and token guessing.
	Throttle ThrottleConfig
	Now      func() time.Time
}

// Service authenticates requests against the users in the database.
type Service struct {
	db          *gorm.DB
	log         hclog.Logger
	digest      *Digest
	jwt         *JWT
	defaultRole Role
	now         func() time.Time
	users       *userCache
	tokens      *tokenCache
	sessions    *sessionCache
	throttle    *throttle
}

// New loads (or, on first start, creates) the shared secrets and returns
// the service.
func New(ctx context.Context, db *gorm.DB, cfg Config, log hclog.Logger) (*Service, error) {
	if cfg.Realm == "" {
		cfg.Realm = "crowbar"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.UserCacheTTL == 0 {
		cfg.UserCacheTTL = 5 * time.Second
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if cfg.DefaultRole != "" {
		if _, err := ParseRole(string(cfg.DefaultRole)); err != nil {
			return nil, fmt.Errorf("default role: %w", err)
		}
	}
	nonceKey, err := LoadOrCreateSecret(ctx, db, "digest-nonce-key", func() (string, error) {
		var b [32]byte
		_, err := rand.Read(b[:])
		return hex.EncodeToString(b[:]), err
	})
	if err != nil {
		return nil, err
	}
	key, err := hex.DecodeString(nonceKey)
	if err != nil {
		return nil, fmt.Errorf("digest-nonce-key secret is corrupt: %w", err)
	}
	d, err := NewDigest(DigestConfig{Realm: cfg.Realm, Algorithms: cfg.DigestAlgorithms, NonceTTL: cfg.NonceTTL, Key: key, Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	pemKey, err := LoadOrCreateSecret(ctx, db, "jwt-signing-key", GenerateSigningKey)
	if err != nil {
		return nil, err
	}
	sk, err := ParseSigningKey(pemKey)
	if err != nil {
		return nil, fmt.Errorf("jwt-signing-key secret is corrupt: %w", err)
	}
	j, err := NewJWT(JWTConfig{PublicKeys: cfg.JWTPublicKeys, HMACSecret: cfg.JWTHMACSecret, SigningKey: sk,
		RequiredScope: cfg.RequiredScope, Now: cfg.Now})
	if err != nil {
		return nil, err
	}
	return &Service{db: db, log: log, digest: d, jwt: j, defaultRole: cfg.DefaultRole, now: cfg.Now,
		users:    &userCache{ttl: cfg.UserCacheTTL, now: cfg.Now, m: map[string]cachedUser{}},
		tokens:   &tokenCache{m: map[string]*Claims{}},
		sessions: &sessionCache{ttl: cfg.UserCacheTTL, m: map[string]cachedSession{}},
		throttle: newThrottle(db, cfg.Throttle, cfg.Now)}, nil
}

// CheckThrottle refuses (*Throttled) a sign-in by subjects (Subjects)
// while they wait after failed ones.
func (s *Service) CheckThrottle(ctx context.Context, subjects []string) error {
	return s.throttle.Check(ctx, subjects)
}

// SignInFailed counts a failed sign-in (an *Error with Guess) against
// subjects; other failures are not counted.
func (s *Service) SignInFailed(ctx context.Context, subjects []string, err error) {
	if e, ok := AsError(err); !ok || !e.Guess {
		return
	}
	if err := s.throttle.Failed(ctx, subjects); err != nil {
		s.log.Warn("sign-in throttling", "error", err)
	}
}

// SignInSucceeded resets the failures of subjects.
func (s *Service) SignInSucceeded(ctx context.Context, subjects []string) {
	s.throttle.Succeeded(ctx, subjects)
}

// Realm is the digest realm.
func (s *Service) Realm() string { return s.digest.Realm() }

// Challenges returns the WWW-Authenticate values for a 401: one Digest
// challenge per algorithm, then Bearer.
func (s *Service) Challenges(stale bool) []string {
	return append(s.digest.Challenges(stale), fmt.Sprintf(`Bearer realm=%q`, s.digest.Realm()))
}

// SetPassword stores the HA1s of password for u in this server's realm.
func (s *Service) SetPassword(u *model.User, password string) {
	u.HA1MD5 = HA1(MD5, u.Username, s.Realm(), password)
	u.HA1SHA256 = HA1(SHA256, u.Username, s.Realm(), password)
	u.DigestRealm = s.Realm()
}

// Authenticate checks an Authorization header value for a request and
// returns the caller. Failures are *Error.
func (s *Service) Authenticate(ctx context.Context, method, requestURI, header string) (*Caller, error) {
	switch {
	case header == "":
		return nil, fail(Unauthenticated, "credentials are required: use HTTP Digest or a Bearer token")
	case strings.HasPrefix(header, "Digest "):
		return s.authDigest(ctx, method, requestURI, header)
	case strings.HasPrefix(header, "Bearer "):
		return s.authBearer(ctx, strings.TrimSpace(strings.TrimPrefix(header, "Bearer ")))
	}
	scheme, _, _ := strings.Cut(header, " ")
	return nil, fail(Unauthenticated, "authorization scheme %q is not supported: use Digest or Bearer", scheme)
}

func (s *Service) findUser(ctx context.Context, username string) (*model.User, error) {
	if u, ok := s.users.get(username); ok {
		return u, nil
	}
	var u model.User
	err := s.db.WithContext(ctx).Where("username = ?", username).Take(&u).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s.users.put(&u)
	return &u, nil
}

// UserChanged drops what the service remembers of username; call it after
// a user is changed or deleted.
func (s *Service) UserChanged(username string) { s.users.forget(username) }

func (s *Service) authDigest(ctx context.Context, method, requestURI, header string) (*Caller, error) {
	c, err := ParseDigest(header)
	if err != nil {
		return nil, fail(Unauthenticated, "%v", err)
	}
	var user *model.User
	var lookupErr error
	name, err := s.digest.Verify(c, method, requestURI, func(username, alg string) (string, bool) {
		user, lookupErr = s.findUser(ctx, username)
		if user == nil || user.DigestRealm != s.Realm() {
			if user != nil {
				s.log.Warn("user's digest credentials were set in another realm; reset the password",
					"user", username, "stored_realm", user.DigestRealm, "realm", s.Realm())
			}
			return "", false
		}
		if alg == SHA256 {
			return user.HA1SHA256, user.HA1SHA256 != ""
		}
		return user.HA1MD5, user.HA1MD5 != ""
	})
	if lookupErr != nil {
		return nil, fmt.Errorf("look up user: %w", lookupErr)
	}
	if err != nil {
		return nil, err
	}
	if !user.APIAccess {
		e := fail(Forbidden, "user %q is not flagged for API access", name)
		e.User = name
		return nil, e
	}
	return &Caller{Username: name, Role: Role(user.Role), Scheme: "digest"}, nil
}

func (s *Service) authBearer(ctx context.Context, token string) (*Caller, error) {
	claims, ok := s.tokens.get(token)
	if ok && s.now().After(claims.ExpiresAt.Add(30*time.Second)) {
		s.tokens.forget(token)
		return nil, fail(Unauthenticated, "bearer token has expired")
	}
	if !ok {
		var err error
		if claims, err = s.jwt.Verify(token); err != nil {
			return nil, err
		}
		s.tokens.put(token, claims, s.now())
	}
	user, err := s.findUser(ctx, claims.Subject)
	if err != nil {
		return nil, fmt.Errorf("look up user: %w", err)
	}
	switch {
	case user != nil && user.APIAccess:
		return &Caller{Username: user.Username, Role: Role(user.Role), Scheme: "bearer"}, nil
	case user != nil:
		e := fail(Forbidden, "user %q is not flagged for API access", user.Username)
		e.User = user.Username
		return nil, e
	case s.defaultRole != "":
		return &Caller{Username: claims.Subject, Role: s.defaultRole, Scheme: "bearer"}, nil
	}
	e := fail(Forbidden, "bearer token subject %q is not a crowbar user", claims.Subject)
	e.User = claims.Subject
	return nil, e
}

// MintToken signs a bearer token for the caller, carrying the caller's
// role (which nodes act on).
func (s *Service) MintToken(c *Caller, validity time.Duration) (string, time.Time, error) {
	return s.jwt.Mint(c.Username, string(c.Role), validity)
}

// NodeUser is the subject of the tokens the server mints for itself to
// command nodes; it is not a user of the API.
const NodeUser = "crowbar-server"

// MintNodeToken signs a token the server gives nodes with AUTH: subject
// NodeUser, role admin.
func (s *Service) MintNodeToken(validity time.Duration) (string, time.Time, error) {
	return s.jwt.Mint(NodeUser, string(RoleAdmin), validity)
}

// TokenKeyPEM is the public key that verifies every token this server
// mints, for agents.
func (s *Service) TokenKeyPEM() (string, error) { return s.jwt.PublicKeyPEM() }

// Permits reports whether role may make a request with method to a route;
// users reports a user-management route. The answer is nil or a Forbidden
// *Error with the reason.
func Permits(c *Caller, method string, users bool) error {
	read := method == "GET" || method == "HEAD"
	switch {
	case c.Role == RoleAdmin:
		return nil
	case users:
		return fail(Forbidden, "user %q (role %s) may not manage users: that needs the admin role", c.Username, c.Role)
	case c.Role == RoleOperator:
		return nil
	case c.Role == RoleReader && read:
		return nil
	}
	return fail(Forbidden, "user %q has the reader role, which may only read (GET)", c.Username)
}
