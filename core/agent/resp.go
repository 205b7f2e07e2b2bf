package agent

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/tidwall/redcon"
)

// session is one client connection's state.
type session struct {
	user    string
	role    string
	expires time.Time // the token's exp; zero until AUTH succeeds
}

func (a *Agent) accept(c redcon.Conn) bool {
	s := &session{}
	if a.cfg.NoAuth {
		s.user, s.role, s.expires = "corex", "admin", time.Now().AddDate(100, 0, 0)
	}
	c.SetContext(s)
	return true
}

func (a *Agent) closed(redcon.Conn, error) {}

// handle answers one Redis command. Before a good AUTH only AUTH, QUIT and
// HELLO are answered; a connection whose token expires must AUTH again.
func (a *Agent) handle(c redcon.Conn, cmd redcon.Command) {
	s, _ := c.Context().(*session)
	if s == nil {
		s = &session{}
		c.SetContext(s)
	}
	name := strings.ToUpper(string(cmd.Args[0]))
	args := cmd.Args[1:]
	switch name {
	case "AUTH":
		a.auth(c, s, args)
		return
	case "QUIT":
		c.WriteString("OK")
		c.Close() //nolint:errcheck
		return
	case "HELLO":
		c.WriteError("NOPROTO this server speaks RESP2 only")
		return
	}
	if s.expires.IsZero() {
		c.WriteError("NOAUTH Authentication required: AUTH with a JWT signed by the crowbar server")
		return
	}
	if !time.Now().Before(s.expires) {
		*s = session{}
		c.WriteError("NOAUTH the token has expired: AUTH with a new one")
		return
	}
	switch name {
	case "PING":
		if len(args) > 0 {
			c.WriteBulk(args[0])
		} else {
			c.WriteString("PONG")
		}
	case "ECHO":
		if !arity(c, name, args, 1, 1) {
			return
		}
		c.WriteBulk(args[0])
	case "CLIENT":
		// Client libraries name themselves; nothing to keep.
		if len(args) > 0 && strings.EqualFold(string(args[0]), "GETNAME") {
			c.WriteNull()
			return
		}
		c.WriteString("OK")
	case "SELECT":
		if !arity(c, name, args, 1, 1) {
			return
		}
		if string(args[0]) != "0" {
			c.WriteError("ERR only database 0 exists")
			return
		}
		c.WriteString("OK")
	case "RPUSH":
		a.rpush(c, args)
	case "BRPOPLPUSH":
		if !arity(c, name, args, 3, 3) {
			return
		}
		timeout, ok := seconds(c, args[2])
		if !ok {
			return
		}
		if v, ok := a.lists.blockingRotate(a.ctx, string(args[0]), string(args[1]), timeout); ok {
			c.WriteBulk(v)
		} else {
			c.WriteNull()
		}
	case "RPOPLPUSH":
		if !arity(c, name, args, 2, 2) {
			return
		}
		a.lists.mu.Lock()
		v, ok := a.lists.rotate(string(args[0]), string(args[1]))
		a.lists.mu.Unlock()
		if ok {
			c.WriteBulk(v)
		} else {
			c.WriteNull()
		}
	case "BLPOP":
		if !arity(c, name, args, 2, -1) {
			return
		}
		timeout, ok := seconds(c, args[len(args)-1])
		if !ok {
			return
		}
		keys := make([]string, len(args)-1)
		for i, k := range args[:len(args)-1] {
			keys[i] = string(k)
		}
		if k, v, ok := a.lists.blockingPopFront(a.ctx, keys, timeout); ok {
			c.WriteArray(2)
			c.WriteBulkString(k)
			c.WriteBulk(v)
		} else {
			c.WriteNull()
		}
	case "LPOP":
		if !arity(c, name, args, 1, 1) {
			return
		}
		a.lists.mu.Lock()
		v, ok := a.lists.popFront(string(args[0]))
		a.lists.mu.Unlock()
		if ok {
			c.WriteBulk(v)
		} else {
			c.WriteNull()
		}
	case "LLEN":
		if !arity(c, name, args, 1, 1) {
			return
		}
		c.WriteInt(a.lists.length(string(args[0])))
	case "LRANGE":
		if !arity(c, name, args, 3, 3) {
			return
		}
		start, err1 := strconv.Atoi(string(args[1]))
		stop, err2 := strconv.Atoi(string(args[2]))
		if err1 != nil || err2 != nil {
			c.WriteError("ERR value is not an integer or out of range")
			return
		}
		vals := a.lists.lrange(string(args[0]), start, stop)
		c.WriteArray(len(vals))
		for _, v := range vals {
			c.WriteBulk(v)
		}
	case "LKEYEXISTS", "EXISTS":
		if !arity(c, name, args, 1, -1) {
			return
		}
		n := 0
		for _, k := range args {
			if a.lists.exists(string(k)) {
				n++
			}
		}
		c.WriteInt(n)
	case "LTTL", "TTL":
		if !arity(c, name, args, 1, 1) {
			return
		}
		c.WriteInt(a.lists.ttl(string(args[0])))
	case "DEL":
		if !arity(c, name, args, 1, -1) {
			return
		}
		keys := make([]string, len(args))
		for i, k := range args {
			keys[i] = string(k)
		}
		c.WriteInt(a.lists.del(keys...))
	default:
		c.WriteError(fmt.Sprintf("ERR unknown command '%s': this is a core0 node; push commands to %s", name, core0.Queue))
	}
}

// auth checks a JWT given as AUTH's password (AUTH user pass: the user is
// ignored, as core0 does).
func (a *Agent) auth(c redcon.Conn, s *session, args [][]byte) {
	if len(args) < 1 || len(args) > 2 {
		c.WriteError("ERR wrong number of arguments for 'auth' command")
		return
	}
	token := string(args[len(args)-1])
	v := a.verifier.Load()
	if v == nil {
		*s = session{}
		c.WriteError("WRONGPASS this agent has not joined a crowbar server, so it trusts no token yet")
		return
	}
	claims, err := v.Verify(token)
	if err != nil {
		*s = session{}
		a.log.Warn("AUTH refused", "remote", c.RemoteAddr(), "reason", err.Error())
		c.WriteError("WRONGPASS " + err.Error())
		return
	}
	switch auth.Role(claims.Role) {
	case auth.RoleAdmin, auth.RoleOperator:
	case "":
		*s = session{}
		c.WriteError("WRONGPASS the token carries no role; mint it with the crowbar server")
		return
	default:
		*s = session{}
		a.log.Warn("AUTH refused", "remote", c.RemoteAddr(), "user", claims.Subject, "role", claims.Role)
		c.WriteError(fmt.Sprintf("WRONGPASS user %q has the %s role; only admin and operator may command nodes", claims.Subject, claims.Role))
		return
	}
	*s = session{user: claims.Subject, role: claims.Role, expires: claims.ExpiresAt}
	c.WriteString("OK")
}

// rpush accepts commands pushed on core:default; the reply counts them.
func (a *Agent) rpush(c redcon.Conn, args [][]byte) {
	if !arity(c, "RPUSH", args, 2, -1) {
		return
	}
	if string(args[0]) != core0.Queue {
		c.WriteError(fmt.Sprintf("ERR only %s takes pushes on a core0 node", core0.Queue))
		return
	}
	n := 0
	for _, raw := range args[1:] {
		if err := a.jobs.submit(raw); err != nil {
			c.WriteError("ERR " + err.Error())
			return
		}
		n++
	}
	c.WriteInt(n)
}

func arity(c redcon.Conn, name string, args [][]byte, min, max int) bool {
	if len(args) < min || (max >= 0 && len(args) > max) {
		c.WriteError(fmt.Sprintf("ERR wrong number of arguments for '%s' command", strings.ToLower(name)))
		return false
	}
	return true
}

// seconds reads a blocking command's timeout (0: forever).
func seconds(c redcon.Conn, b []byte) (time.Duration, bool) {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || f < 0 {
		c.WriteError("ERR timeout is not a float or out of range")
		return 0, false
	}
	return time.Duration(f * float64(time.Second)), true
}
