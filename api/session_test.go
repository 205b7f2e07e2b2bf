package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// signIn starts a web session for user and returns its cookie header pair
// and CSRF token.
func signIn(t *testing.T, s *apitest.Server, user, password string) (cookie []string, csrf string, resp *apitest.Response) {
	t.Helper()
	r := s.Must(201, "POST", "/api/v2/session", fmt.Sprintf(`{"username": %q, "password": %q}`, user, password),
		"Authorization", "", "X-Crowbar-Client", "ui")
	var c *http.Cookie
	for _, ck := range (&http.Response{Header: r.Header}).Cookies() {
		if ck.Name == "crowbar_session" {
			c = ck
		}
	}
	if c == nil {
		t.Fatalf("sign-in set no session cookie: %v", r.Header)
	}
	csrf, _ = r.Object(t)["csrf_token"].(string)
	if csrf == "" {
		t.Fatalf("sign-in answer has no csrf_token: %s", r.Body)
	}
	return []string{"Authorization", "", "Cookie", "crowbar_session=" + c.Value}, csrf, r
}

// TestWebSession: the web UI's credential. A password signs in to an
// HttpOnly, SameSite=Strict cookie; reads need only the cookie, writes also
// its CSRF token; roles apply as for every other scheme; sign-out ends the
// session everywhere; bad sign-ins are 4xx with a message and change
// nothing.
func TestWebSession(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := apitest.New(t, st)
		s.AddUser("rita", "rita-password", auth.RoleReader, true)
		s.AddUser("nokey", "nokey-password", auth.RoleOperator, false)

		cookie, csrf, r := signIn(t, s, "admin", apitest.AdminPassword)
		set := r.Header.Get("Set-Cookie")
		for _, want := range []string{"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="} {
			if !strings.Contains(set, want) {
				t.Errorf("Set-Cookie %q lacks %s", set, want)
			}
		}
		if strings.Contains(set, "Secure") {
			t.Errorf("Set-Cookie %q is Secure over plain HTTP (the browser would drop it)", set)
		}
		if o := r.Object(t); o["role"] != "admin" || o["username"] != "admin" || o["expires_at"] == nil {
			t.Errorf("sign-in answer %v", o)
		}
		me := s.Must(200, "GET", "/api/v2/session", "", cookie...).Object(t)
		if me["csrf_token"] != csrf || me["scheme"] != "session" {
			t.Errorf("GET /session = %v, want the sign-in's csrf token", me)
		}
		s.Must(200, "GET", "/api/v2/nodes", "", cookie...)

		// Writes: the cookie alone, or with a wrong token, is refused.
		before := storetest.Snapshot(t, st)
		for _, h := range [][]string{nil, {"X-CSRF-Token", "nope"}, {"X-CSRF-Token", csrf + "x"}} {
			r := s.Must(403, "POST", "/api/v2/nodes", `{"name": "forged.example.com"}`, append(append([]string{}, cookie...), h...)...)
			if !strings.Contains(string(r.Body), "CSRF") {
				t.Errorf("forged write answered %s, want a message naming the CSRF token", r.Body)
			}
		}
		if after := storetest.Snapshot(t, st); fmt.Sprint(before) != fmt.Sprint(after) {
			t.Fatal("a refused write changed stored data")
		}
		s.Must(201, "POST", "/api/v2/nodes", `{"name": "web.example.com"}`, append(cookie, "X-CSRF-Token", csrf)...)

		// A reader's session reads but may not write, token or not.
		rc, rcsrf, _ := signIn(t, s, "rita", "rita-password")
		s.Must(200, "GET", "/api/v2/nodes/web.example.com", "", rc...)
		before = storetest.Snapshot(t, st)
		s.Must(403, "PUT", "/api/v2/nodes/web.example.com", `{"description": "x"}`, append(rc, "X-CSRF-Token", rcsrf)...)
		s.Must(403, "GET", "/api/v2/users", "", rc...)

		// Bad sign-ins: 4xx with a message; a UI request gets no digest
		// challenge (the browser would raise its own dialog).
		for _, c := range []struct {
			body   string
			status int
			field  string
			text   string
		}{
			{`{"username": "admin", "password": "wrong"}`, 401, "", "wrong user name or password"},
			{`{"username": "nobody", "password": "wrong"}`, 401, "", "wrong user name or password"},
			{`{"username": "nokey", "password": "nokey-password"}`, 403, "", "API access"},
			{`{"username": "", "password": "x"}`, 422, "username", "required"},
			{`{"username": "admin"}`, 422, "password", "required"},
			{`{"username": "admin", "password": "x", "remember": true}`, 400, "", "remember"},
			{`{"username": 7, "password": "x"}`, 400, "", "username"},
			{`{"username": "admin", "password":`, 400, "", ""},
		} {
			r := s.Do("POST", "/api/v2/session", c.body, "Authorization", "", "X-Crowbar-Client", "ui")
			o := r.Object(t)
			if r.Status != c.status || !strings.Contains(fmt.Sprint(o["message"]), c.text) || (c.field != "" && o["field"] != c.field) {
				t.Errorf("sign-in %s: %d %v, want %d field %q mentioning %q", c.body, r.Status, o, c.status, c.field, c.text)
			}
			if r.Header.Get("Set-Cookie") != "" || r.Header.Get("WWW-Authenticate") != "" {
				t.Errorf("sign-in %s set a cookie or a challenge: %v", c.body, r.Header)
			}
		}
		if after := storetest.Snapshot(t, st); fmt.Sprint(before) != fmt.Sprint(after) {
			t.Fatal("refused requests changed stored data")
		}
		// Behind TLS the cookie is Secure.
		r = s.Must(201, "POST", "/api/v2/session", `{"username": "admin", "password": "`+apitest.AdminPassword+`"}`,
			"Authorization", "", "X-Forwarded-Proto", "https")
		if !strings.Contains(r.Header.Get("Set-Cookie"), "Secure") {
			t.Errorf("behind TLS the cookie is not Secure: %s", r.Header.Get("Set-Cookie"))
		}

		// An expired session is refused (fresh, so not cached).
		ec, _, _ := signIn(t, s, "admin", apitest.AdminPassword)
		if err := st.DB.Exec("UPDATE sessions SET expires_at = ? WHERE username = 'admin' AND expires_at = (SELECT MAX(expires_at) FROM sessions)",
			"2000-01-01 00:00:00").Error; err != nil {
			t.Fatal(err)
		}
		if r := s.Do("GET", "/api/v2/nodes", "", ec...); r.Status != 401 || !strings.Contains(string(r.Body), "sign in again") {
			t.Errorf("expired session: %d %s", r.Status, r.Body)
		}

		// Sign-out needs the token too, ends the session and clears the cookie.
		s.Must(403, "DELETE", "/api/v2/session", "", cookie...)
		r = s.Must(200, "DELETE", "/api/v2/session", "", append(cookie, "X-CSRF-Token", csrf)...)
		if !strings.Contains(r.Header.Get("Set-Cookie"), "Max-Age=0") {
			t.Errorf("sign-out did not clear the cookie: %q", r.Header.Get("Set-Cookie"))
		}
		if r := s.Do("GET", "/api/v2/nodes", "", cookie...); r.Status != 401 || r.Header.Get("WWW-Authenticate") != "" {
			t.Errorf("after sign-out: %d (challenge %q), want 401 without a challenge", r.Status, r.Header.Get("WWW-Authenticate"))
		}
		s.Must(400, "DELETE", "/api/v2/session", "") // a bearer caller has no session

		// A deleted user's session ends with the user.
		s.Must(200, "DELETE", "/api/v2/users/rita", "")
		s.Must(401, "GET", "/api/v2/nodes", "", rc...)
	})
}
