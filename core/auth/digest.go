package auth

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The digest algorithms crowbar accepts (RFC 7616).
const (
	MD5    = "MD5"
	SHA256 = "SHA-256"
)

// DigestConfig configures HTTP Digest authentication.
type DigestConfig struct {
	Realm      string
	Algorithms []string      // offered in this order; default SHA-256 then MD5
	NonceTTL   time.Duration // how long a nonce is good for; default 5 minutes
	Key        []byte        // signs nonces; shared by replicas (a server secret)
	Now        func() time.Time
}

// Digest verifies RFC 7616 Digest credentials with qop=auth. Nonces are
// stateless (a timestamp and random bytes, signed with the shared key), so
// any replica accepts any replica's nonce; the nonce counts seen are kept
// per process, so a replayed request is refused by the replica that saw it.
type Digest struct {
	cfg    DigestConfig
	opaque string

	mu    sync.Mutex
	seen  map[string]uint64 // nonce → highest nonce-count used
	sweep time.Time
}

// NewDigest returns a verifier for cfg.
func NewDigest(cfg DigestConfig) (*Digest, error) {
	if len(cfg.Key) < 16 {
		return nil, fmt.Errorf("digest: nonce key must be at least 16 bytes")
	}
	if cfg.Realm == "" {
		return nil, fmt.Errorf("digest: realm is required")
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{SHA256, MD5}
	}
	for _, a := range cfg.Algorithms {
		if a != MD5 && a != SHA256 {
			return nil, fmt.Errorf("digest: algorithm %q is not supported (MD5, SHA-256)", a)
		}
	}
	if cfg.NonceTTL == 0 {
		cfg.NonceTTL = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := hmac.New(sha256.New, cfg.Key)
	m.Write([]byte("opaque"))
	return &Digest{cfg: cfg, opaque: hex.EncodeToString(m.Sum(nil)[:16]), seen: map[string]uint64{}}, nil
}

// Realm is the protection space the verifier serves.
func (d *Digest) Realm() string { return d.cfg.Realm }

// Challenges returns one WWW-Authenticate value per offered algorithm, each
// with a fresh nonce; stale tells the client its nonce merely expired.
func (d *Digest) Challenges(stale bool) []string {
	out := make([]string, 0, len(d.cfg.Algorithms))
	for _, alg := range d.cfg.Algorithms {
		c := fmt.Sprintf(`Digest realm=%q, qop="auth", algorithm=%s, nonce=%q, opaque=%q`,
			d.cfg.Realm, alg, d.newNonce(), d.opaque)
		if stale {
			c += ", stale=true"
		}
		out = append(out, c)
	}
	return out
}

func (d *Digest) newNonce() string {
	var b [32]byte
	binary.BigEndian.PutUint64(b[:8], uint64(d.cfg.Now().Unix()))
	rand.Read(b[8:16]) //nolint:errcheck
	copy(b[16:], d.sign(b[:16]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (d *Digest) sign(b []byte) []byte {
	m := hmac.New(sha256.New, d.cfg.Key)
	m.Write(b)
	return m.Sum(nil)[:16]
}

// checkNonce reports whether nonce is ours and whether it has expired.
func (d *Digest) checkNonce(nonce string) (ours, expired bool) {
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != 32 || !hmac.Equal(b[16:], d.sign(b[:16])) {
		return false, false
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(b[:8])), 0)
	return true, d.cfg.Now().Sub(issued) > d.cfg.NonceTTL
}

// Credentials are the parameters of an Authorization: Digest header.
type Credentials map[string]string

// ParseDigest reads the parameters of a "Digest ..." header value.
func ParseDigest(header string) (Credentials, error) {
	rest, ok := strings.CutPrefix(header, "Digest ")
	if !ok {
		return nil, fmt.Errorf("not a Digest authorization")
	}
	c := Credentials{}
	s := strings.TrimSpace(rest)
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("malformed Digest parameters")
		}
		key := strings.ToLower(strings.TrimSpace(s[:eq]))
		s = strings.TrimSpace(s[eq+1:])
		var val string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated quoted string in Digest parameters")
			}
			val, s = b.String(), s[i+1:]
		} else {
			end := strings.IndexByte(s, ',')
			if end < 0 {
				end = len(s)
			}
			val, s = strings.TrimSpace(s[:end]), s[end:]
		}
		c[key] = val
		s = strings.TrimLeft(strings.TrimSpace(s), ",")
		s = strings.TrimSpace(s)
	}
	return c, nil
}

// HA1 computes H(username:realm:password) for algorithm, as hex.
func HA1(algorithm, username, realm, password string) string {
	return hexHash(algorithm, username+":"+realm+":"+password)
}

func newHash(algorithm string) hash.Hash {
	if algorithm == SHA256 {
		return sha256.New()
	}
	return md5.New()
}

func hexHash(algorithm, s string) string {
	h := newHash(algorithm)
	h.Write([]byte(s))
	return hex.EncodeToString(h.Sum(nil))
}

// Response computes the expected request-digest for qop=auth.
func Response(algorithm, ha1, nonce, nc, cnonce, method, uri string) string {
	ha2 := hexHash(algorithm, method+":"+uri)
	return hexHash(algorithm, ha1+":"+nonce+":"+nc+":"+cnonce+":auth:"+ha2)
}

// Verify checks credentials c for a request with method and requestURI.
// ha1 returns the stored HA1 of c's user for an algorithm (false when the
// user is unknown or has none). It returns the username on success.
func (d *Digest) Verify(c Credentials, method, requestURI string, ha1 func(user, algorithm string) (string, bool)) (string, error) {
	user := c["username"]
	deny := func(format string, args ...any) (string, error) {
		e := fail(Unauthenticated, format, args...)
		e.User = user
		return "", e
	}
	alg := c["algorithm"]
	if alg == "" {
		alg = MD5 // RFC 7616 §3.4: absent means MD5
	}
	offered := false
	for _, a := range d.cfg.Algorithms {
		offered = offered || strings.EqualFold(a, alg)
	}
	if !offered {
		return deny("digest algorithm %q is not accepted", alg)
	}
	alg = strings.ToUpper(alg)
	for _, k := range []string{"username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce"} {
		if c[k] == "" {
			return deny("digest credentials lack %s", k)
		}
	}
	if c["realm"] != d.cfg.Realm {
		return deny("digest realm %q is not this server's (%q)", c["realm"], d.cfg.Realm)
	}
	if c["qop"] != "auth" {
		return deny("digest qop must be auth")
	}
	if c["uri"] != requestURI {
		return deny("digest uri does not match the request")
	}
	nc, err := strconv.ParseUint(c["nc"], 16, 64)
	if err != nil || len(c["nc"]) != 8 {
		return deny("digest nonce count must be 8 hex digits")
	}
	ours, expired := d.checkNonce(c["nonce"])
	if !ours {
		return deny("digest nonce was not issued by this server")
	}
	stored, ok := ha1(user, alg)
	if !ok {
		// Spend the same work as a real check so unknown users take as long.
		stored = HA1(alg, user, d.cfg.Realm, "")
	}
	want := Response(alg, stored, c["nonce"], c["nc"], c["cnonce"], method, c["uri"])
	if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(c["response"]))) != 1 || !ok {
		e := fail(Unauthenticated, "digest credentials for user %q are not valid", user)
		e.User, e.Guess = user, true
		return "", e
	}
	if expired {
		e := fail(Unauthenticated, "digest nonce has expired")
		e.Stale, e.User = true, user
		return "", e
	}
	if !d.use(c["nonce"], nc) {
		return deny("digest nonce count %s was already used: request replayed", c["nc"])
	}
	return user, nil
}

// use records nonce-count nc for nonce and reports whether it is fresh
// (greater than any count seen for that nonce).
func (d *Digest) use(nonce string, nc uint64) bool {
	now := d.cfg.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if now.Sub(d.sweep) > d.cfg.NonceTTL {
		for n := range d.seen {
			if _, expired := d.checkNonce(n); expired {
				delete(d.seen, n)
			}
		}
		d.sweep = now
	}
	if nc <= d.seen[nonce] {
		return false
	}
	d.seen[nonce] = nc
	return true
}
