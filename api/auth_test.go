package api_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/golang-jwt/jwt/v5"
)

func needCurl(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is required in CI")
		}
		t.Skip("curl not installed")
	}
	return path
}

// curl runs the real curl and returns the HTTP status, the body and curl's
// verbose trace.
func curl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(needCurl(t), append([]string{"-sS", "-v", "-w", "\n%{http_code}"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, stderr.String())
	}
	s := strings.TrimRight(string(out), "\n")
	i := strings.LastIndex(s, "\n")
	var code int
	fmt.Sscan(s[i+1:], &code)
	return code, s[:max(i, 0)], stderr.String()
}

func TestDigestWithRealCurl(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{auth.MD5, auth.SHA256} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			storetest.Each(t, func(t *testing.T, st *store.Store) {
				s := apitest.New(t, st, func(su *apitest.Setup) { su.Auth.DigestAlgorithms = []string{alg} })
				s.AddUser("alice", "alice-password", auth.RoleOperator, true)
				s.AddUser("bob", "bob-password", auth.RoleOperator, false)
				nodes := s.URL + "/api/v2/nodes"

				// The seed's call, verbatim but for host and port.
				code, body, trace := curl(t, "--digest", "-u", "alice:alice-password", "-X", "POST",
					"-d", "name=newtest.cr0wbar.com", "-d", "bootenv=local", "-H", "Content-Type:application/json", "--url", nodes)
				if code != 201 || !strings.Contains(body, `"alias":"newtest"`) {
					t.Fatalf("create with digest: %d %s\n%s", code, body, trace)
				}
				if !regexp.MustCompile(`> Authorization: Digest .*algorithm=` + regexp.QuoteMeta(alg)).MatchString(trace) {
					t.Errorf("curl did not answer with %s:\n%s", alg, trace)
				}
				if code, _, _ := curl(t, "--digest", "-u", "alice:alice-password", nodes); code != 200 {
					t.Errorf("GET with digest: %d", code)
				}
				cases := []struct {
					name, user string
					want       int
				}{
					{"wrong password", "alice:nope-nope", 401},
					{"unknown user", "mallory:mallory-password", 401},
					{"no api access", "bob:bob-password", 403},
				}
				for _, c := range cases {
					code, body, _ := curl(t, "--digest", "-u", c.user, nodes)
					if code != c.want || !strings.Contains(body, `"status":`) {
						t.Errorf("%s: %d %s, want %d with a JSON error", c.name, code, body, c.want)
					}
				}
				code, _, _ = curl(t, "-H", "Authorization: Bearer "+s.Token, nodes)
				if code != 200 {
					t.Errorf("GET with curl and a bearer token: %d", code)
				}
			})
		})
	}
}

// digestHeader builds an Authorization value for a challenge, as a client would.
func digestHeader(t *testing.T, challenge, user, password, method, uri, nc string) string {
	t.Helper()
	c, err := auth.ParseDigest(challenge)
	if err != nil {
		t.Fatal(err)
	}
	ha1 := auth.HA1(c["algorithm"], user, c["realm"], password)
	resp := auth.Response(c["algorithm"], ha1, c["nonce"], nc, "0a4f113b", method, uri)
	return fmt.Sprintf(`Digest username=%q, realm=%q, nonce=%q, uri=%q, qop=auth, nc=%s, cnonce="0a4f113b", response=%q, opaque=%q, algorithm=%s`,
		user, c["realm"], c["nonce"], uri, nc, resp, c["opaque"], c["algorithm"])
}

func TestDigestRefusesReplaysAndExpiredNonces(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	s := apitest.New(t, storetest.Open(t, storetest.Databases(t)[0].DSN), func(su *apitest.Setup) {
		su.Auth.Now = clock
		su.Auth.NonceTTL = time.Minute
	})
	r := s.Must(401, "GET", "/api/v2/nodes", "", "Authorization", "")
	challenge := r.Header.Values("WWW-Authenticate")[0]
	h1 := digestHeader(t, challenge, "admin", apitest.AdminPassword, "GET", "/api/v2/nodes", "00000001")
	s.Must(200, "GET", "/api/v2/nodes", "", "Authorization", h1)
	if r := s.Must(401, "GET", "/api/v2/nodes", "", "Authorization", h1); !strings.Contains(string(r.Body), "replayed") {
		t.Errorf("replay answered %s", r.Body)
	}
	h2 := digestHeader(t, challenge, "admin", apitest.AdminPassword, "GET", "/api/v2/nodes", "00000002")
	s.Must(200, "GET", "/api/v2/nodes", "", "Authorization", h2)
	// The uri in the credentials must be the request's.
	s.Must(401, "GET", "/api/v2/deployments", "", "Authorization",
		digestHeader(t, challenge, "admin", apitest.AdminPassword, "GET", "/api/v2/nodes", "00000003"))

	offset.Store(int64(2 * time.Minute))
	h3 := digestHeader(t, challenge, "admin", apitest.AdminPassword, "GET", "/api/v2/nodes", "00000004")
	r = s.Must(401, "GET", "/api/v2/nodes", "", "Authorization", h3)
	if ch := strings.Join(r.Header.Values("WWW-Authenticate"), "\n"); !strings.Contains(ch, "stale=true") {
		t.Errorf("expired nonce: challenges %q lack stale=true", ch)
	}
	// A nonce the server never issued is refused outright, not as stale.
	forged := strings.Replace(challenge, `nonce="`, `nonce="AAAA`, 1)
	r = s.Must(401, "GET", "/api/v2/nodes", "", "Authorization",
		digestHeader(t, forged, "admin", apitest.AdminPassword, "GET", "/api/v2/nodes", "00000001"))
	if strings.Contains(strings.Join(r.Header.Values("WWW-Authenticate"), ""), "stale=true") {
		t.Errorf("a forged nonce was called stale")
	}
}

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestJWTMatrix(t *testing.T) {
	t.Parallel()
	issuer, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader) // like ItsYou.online's ES384 key
	stranger, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	const scope = "user:memberof:acme"
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := apitest.New(t, st, func(su *apitest.Setup) {
			su.Auth.JWTPublicKeys = append(su.Auth.JWTPublicKeys, &issuer.PublicKey)
			su.Auth.RequiredScope = scope
		})
		s.AddUser("alice", "alice-password", auth.RoleOperator, true)
		s.AddUser("rita", "rita-password", auth.RoleReader, true)
		now := time.Now()
		claims := func(user string, iat, exp time.Duration, extra ...any) jwt.MapClaims {
			c := jwt.MapClaims{"username": user, "scope": []string{scope}, "iss": "itsyouonline"}
			if iat != 0 {
				c["iat"] = now.Add(iat).Unix()
			}
			if exp != 0 {
				c["exp"] = now.Add(exp).Unix()
			}
			for i := 0; i+1 < len(extra); i += 2 {
				c[extra[i].(string)] = extra[i+1]
				if extra[i+1] == nil {
					delete(c, extra[i].(string))
				}
			}
			return c
		}
		es := jwt.SigningMethodES384
		noneTok := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims("alice", -time.Second, time.Hour))
		hsTok := sign(t, jwt.SigningMethodHS256, []byte("a-secret-nobody-configured-here!"), claims("alice", -time.Second, time.Hour))
		cases := []struct {
			name, method, token string
			want                int
			message             string
		}{
			{"valid", "GET", sign(t, es, issuer, claims("alice", -time.Second, time.Hour-time.Second)), 200, ""},
			{"validity exactly 3600 s", "GET", sign(t, es, issuer, claims("alice", 0, 0, "iat", now.Unix(), "exp", now.Unix()+3600)), 200, ""},
			{"validity 3601 s", "GET", sign(t, es, issuer, claims("alice", 0, 0, "iat", now.Unix(), "exp", now.Unix()+3601)), 440, "at most 1h0m0s (3600 s)"},
			{"no iat, exp in two hours", "GET", sign(t, es, issuer, claims("alice", 0, 2*time.Hour)), 440, "3600 s"},
			{"expired", "GET", sign(t, es, issuer, claims("alice", -2*time.Hour, -time.Hour)), 401, "expired"},
			{"not valid yet", "GET", sign(t, es, issuer, claims("alice", -time.Second, time.Hour/2, "nbf", now.Add(10*time.Minute).Unix())), 401, "not valid yet"},
			{"no exp", "GET", sign(t, es, issuer, claims("alice", -time.Second, 0)), 401, "no exp"},
			{"wrong key", "GET", sign(t, es, stranger, claims("alice", -time.Second, time.Hour/2)), 401, "signature"},
			{"alg none", "GET", noneTok, 401, ""},
			{"HMAC not configured", "GET", hsTok, 401, ""},
			{"garbage", "GET", "not.a.jwt", 401, ""},
			{"missing scope", "GET", sign(t, es, issuer, claims("alice", -time.Second, time.Hour/2, "scope", []string{"user:memberof:other"})), 403, "required scope"},
			{"unknown subject", "GET", sign(t, es, issuer, claims("zed", -time.Second, time.Hour/2)), 403, "not a crowbar user"},
			{"reader PUT", "PUT", sign(t, es, issuer, claims("rita", -time.Second, time.Hour/2)), 403, "reader role"},
			{"reader GET", "GET", sign(t, es, issuer, claims("rita", -time.Second, time.Hour/2)), 200, ""},
			{"operator on users", "GET", sign(t, es, issuer, claims("alice", -time.Second, time.Hour/2)), 403, "admin role"},
		}
		s.Must(201, "POST", "/api/v2/deployments", `{"name": "test1"}`)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				path, body := "/api/v2/deployments/test1", ""
				if c.method == "PUT" {
					body = `{"description": "x"}`
				}
				if c.name == "operator on users" {
					path = "/api/v2/users"
				}
				r := s.Do(c.method, path, body, "Authorization", "Bearer "+c.token)
				if r.Status != c.want || (c.want != 200 && !strings.Contains(string(r.Body), c.message)) {
					t.Fatalf("status %d body %s; want %d with %q", r.Status, r.Body, c.want, c.message)
				}
				if c.want == 401 && !strings.Contains(strings.Join(r.Header.Values("WWW-Authenticate"), " "), "Bearer") {
					t.Errorf("401 without a Bearer challenge")
				}
			})
		}
	})
}

func TestOrganizationMembersGetTheDefaultRole(t *testing.T) {
	t.Parallel()
	issuer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s := apitest.New(t, storetest.Open(t, storetest.Databases(t)[0].DSN), func(su *apitest.Setup) {
		su.Auth.JWTPublicKeys = append(su.Auth.JWTPublicKeys, &issuer.PublicKey)
		su.Auth.RequiredScope = "user:memberof:acme"
		su.Auth.DefaultRole = auth.RoleReader
	})
	tok := sign(t, jwt.SigningMethodES256, issuer, jwt.MapClaims{"username": "zed", "scope": "user:memberof:acme",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
	s.Must(200, "GET", "/api/v2/nodes", "", "Authorization", "Bearer "+tok)
	s.Must(403, "POST", "/api/v2/nodes", `{"name": "a.example.com"}`, "Authorization", "Bearer "+tok)
}

func TestTokensEndpoint(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := apitest.New(t, st)
		s.AddUser("rita", "rita-password", auth.RoleReader, true)
		tokens := s.URL + "/api/v2/tokens"
		code, body, _ := curl(t, "--digest", "-u", "rita:rita-password", "-X", "POST", "-H", "Content-Type: application/json", "-d", `{"validity": 600}`, tokens)
		if code != 201 {
			t.Fatalf("mint: %d %s", code, body)
		}
		tok := regexp.MustCompile(`"token":"([^"]+)"`).FindStringSubmatch(body)
		if tok == nil || !strings.Contains(body, `"validity":600`) || !strings.Contains(body, `"username":"rita"`) {
			t.Fatalf("mint answered %s", body)
		}
		s.Must(200, "GET", "/api/v2/nodes", "", "Authorization", "Bearer "+tok[1])
		s.Must(403, "POST", "/api/v2/nodes", `{"name": "a.example.com"}`, "Authorization", "Bearer "+tok[1])
		// A token cannot mint another, so bearer access cannot outlive the hour.
		s.Must(403, "POST", "/api/v2/tokens", `{}`, "Authorization", "Bearer "+tok[1])
		for _, bad := range []struct {
			body string
			want int
		}{{`{"validity": 3601}`, 422}, {`{"validity": 0}`, 422}, {`{"validity": "long"}`, 400}, {`{"ttl": 5}`, 400}} {
			code, body, _ := curl(t, "--digest", "-u", "rita:rita-password", "-X", "POST", "-H", "Content-Type: application/json", "-d", bad.body, tokens)
			if code != bad.want {
				t.Errorf("mint %s: %d %s, want %d", bad.body, code, body, bad.want)
			}
		}
	})
}

func TestUserManagement(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := apitest.New(t, st)
		u := s.Must(201, "POST", "/api/v2/users", `{"username": "carol", "password": "carol-password", "role": "operator", "api_access": true, "email": "carol@example.com"}`).Object(t)
		if _, ok := u["password"]; ok || u["admin"] != false || u["role"] != "operator" {
			t.Fatalf("created user: %v", u)
		}
		for _, k := range []string{"ha1_md5", "HA1MD5", "digest_realm"} {
			if _, ok := u[k]; ok {
				t.Fatalf("user shows %s: %v", k, u)
			}
		}
		if code, body, _ := curl(t, "--digest", "-u", "carol:carol-password", s.URL+"/api/v2/nodes"); code != 200 {
			t.Fatalf("new user's digest login: %d %s", code, body)
		}
		if code, _, _ := curl(t, "--digest", "-u", "carol:carol-password", s.URL+"/api/v2/users"); code != 403 {
			t.Errorf("operator listing users: %d, want 403", code)
		}
		s.Must(200, "PUT", "/api/v2/users/carol", `{"password": "carol-new-password"}`)
		if code, _, _ := curl(t, "--digest", "-u", "carol:carol-password", s.URL+"/api/v2/nodes"); code != 401 {
			t.Errorf("old password after a change: %d, want 401", code)
		}
		s.Must(200, "PUT", "/api/v2/users/carol", `{"username": "caroline", "password": "caroline-password"}`)
		if code, _, _ := curl(t, "--digest", "-u", "caroline:caroline-password", s.URL+"/api/v2/nodes"); code != 200 {
			t.Errorf("renamed user's login: %d", code)
		}
		before := storetest.Snapshot(t, st)
		for _, c := range []struct {
			method, path, body string
			want               int
		}{
			{"POST", "/api/v2/users", `{"username": "d", "role": "root"}`, 422},
			{"POST", "/api/v2/users", `{"username": "d", "password": "short"}`, 422},
			{"POST", "/api/v2/users", `{"username": "9d"}`, 422},
			{"POST", "/api/v2/users", `{"username": "admin"}`, 422},
			{"POST", "/api/v2/users", `{"username": "d", "admin": true}`, 422},
			{"POST", "/api/v2/users", `{"username": "d", "ha1_md5": "00"}`, 400},
			{"POST", "/api/v2/users", `{"username": "d", "email": "not-an-email"}`, 422},
			{"PUT", "/api/v2/users/caroline", `{"username": "carla"}`, 422},
			{"PUT", "/api/v2/users/admin", `{"role": "reader"}`, 409},
			{"DELETE", "/api/v2/users/admin", ``, 409},
		} {
			if r := s.Do(c.method, c.path, c.body); r.Status != c.want {
				t.Errorf("%s %s %s: %d %s, want %d", c.method, c.path, c.body, r.Status, r.Body, c.want)
			}
		}
		if after := storetest.Snapshot(t, st); fmt.Sprint(before) != fmt.Sprint(after) {
			t.Errorf("refused user changes changed the database")
		}
		s.Must(200, "PUT", "/api/v2/users/caroline", `{"role": "admin"}`)
		s.Must(200, "PUT", "/api/v2/users/admin", `{"role": "reader"}`) // no longer the last admin
		// The demotion takes effect at once: the old admin's token now reads only.
		s.Must(403, "DELETE", "/api/v2/users/caroline", "")
		if code, body, _ := curl(t, "--digest", "-u", "caroline:caroline-password", "-X", "DELETE", s.URL+"/api/v2/users/admin"); code != 200 {
			t.Errorf("new admin deleting the old one: %d %s", code, body)
		}
	})
}

func TestHealthNeedsNoCredentials(t *testing.T) {
	t.Parallel()
	s := apitest.New(t, storetest.Open(t, storetest.Databases(t)[0].DSN))
	s.Must(http.StatusOK, "GET", "/health", "", "Authorization", "")
	s.Must(http.StatusUnauthorized, "GET", "/api/v2/nodes", "", "Authorization", "")
	s.Must(http.StatusUnauthorized, "GET", "/api/v2/nodes", "", "Authorization", "Basic YWRtaW46YWRtaW4=")
}

// TestSignInThrottledWithRealCurl: 30 wrong digest passwords in a row
// from one address get the free failures answered 401, then 429 with
// Retry-After without their credentials even being checked; the victim
// waits wherever it signs in from, and so does anyone from the guessing
// address, but nobody else; after the wait a right password gets in and
// resets the count.
func TestSignInThrottledWithRealCurl(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		// A first wait of 5 s (1 s by default): the 24 guesses after the
		// free ones must all land inside it, even on a loaded machine (CI
		// once took over a second for them and a 401 slipped between).
		s := apitest.New(t, st, func(su *apitest.Setup) { su.Auth.Throttle.Base = 5 * time.Second })
		s.AddUser("victim", "victim-password", auth.RoleOperator, true)
		s.AddUser("other", "other-password", auth.RoleOperator, true)
		nodes := s.URL + "/api/v2/nodes"
		from := func(addr, user, pass string) (int, string, string) {
			return curl(t, "--interface", addr, "--digest", "-u", user+":"+pass, nodes)
		}
		var codes []int
		var lastBody, lastTrace string
		for i := 0; i < 30; i++ {
			code, body, trace := from("127.0.0.2", "victim", fmt.Sprintf("guess-%d", i))
			codes = append(codes, code)
			lastBody, lastTrace = body, trace
		}
		want := append(repeat(401, 6), repeat(429, 24)...)
		if fmt.Sprint(codes) != fmt.Sprint(want) {
			t.Fatalf("30 wrong passwords: %v, want %v", codes, want)
		}
		if !strings.Contains(lastBody, `"message":"too many failed sign-ins for`) || !regexp.MustCompile(`(?i)< Retry-After: [1-5]\r?\n`).MatchString(lastTrace) {
			t.Errorf("a throttled answer: %s\n%s", lastBody, lastTrace)
		}
		for _, c := range []struct {
			addr, user, pass string
			want             int
		}{
			{"127.0.0.3", "victim", "victim-password", 429}, // the victim waits wherever it signs in from
			{"127.0.0.2", "other", "other-password", 429},   // so does anyone from the guessing address
			{"127.0.0.3", "other", "other-password", 200},   // nobody else
		} {
			if code, body, _ := from(c.addr, c.user, c.pass); code != c.want {
				t.Errorf("%s from %s: %d %s, want %d", c.user, c.addr, code, body, c.want)
			}
		}
		// After the wait (5 s after the 6th failure) the right password
		// gets in and starts the count again.
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, _, _ := from("127.0.0.3", "victim", "victim-password")
			if code == 200 {
				break
			}
			if code != 429 || time.Now().After(deadline) {
				t.Fatalf("after the wait the victim's right password: %d", code)
			}
			time.Sleep(250 * time.Millisecond)
		}
		if code, _, _ := from("127.0.0.3", "victim", "wrong"); code != 401 {
			t.Errorf("the first wrong password after a success: %d, want 401", code)
		}
	})
}

func repeat(v, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}
