package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/model"
	"gorm.io/gorm"
)

// AuditEntry is one write through the API: who, when, what and how it
// ended. Writes made by barclamps through their host API calls are
// recorded too, under "barclamp:<name>".
type AuditEntry struct {
	ID       int64     `json:"id" gorm:"primaryKey"`
	At       time.Time `json:"at"`
	Username string    `json:"username"` // "" for routes open to machines (join, install callbacks)
	Role     string    `json:"role"`
	Scheme   string    `json:"scheme"` // digest, bearer, internal, or "" when open
	Remote   string    `json:"remote"`
	Method   string    `json:"method"`
	Path     string    `json:"path"`
	Status   int       `json:"status"`
	// Summary is the request body, compacted, secrets replaced by "***",
	// cut at 1 KB.
	Summary   string `json:"summary"`
	RequestID string `json:"request_id"`
}

func (AuditEntry) TableName() string { return "audit_log" }

const auditSummaryMax = 1024

// secretKey matches body fields whose values are never recorded.
var secretKey = regexp.MustCompile(`(?i)(password|token|secret|key|ha1)`)

// unaudited are writes that change nothing an operator decides: agents'
// heartbeats.
var unaudited = map[string]bool{"/api/v2/agents/heartbeat": true}

// auditKey holds the *auditNote of a write while it is served.
type auditKey struct{}

// auditNote is where authenticate leaves who made a write, refused or not.
type auditNote struct{ caller *auth.Caller }

// noteCaller tells the audit log who made the request in ctx.
func noteCaller(ctx context.Context, c *auth.Caller) {
	if n, ok := ctx.Value(auditKey{}).(*auditNote); ok {
		n.caller = c
	}
}

// bodyTap keeps the first bytes a handler reads of a body.
type bodyTap struct {
	io.ReadCloser
	buf bytes.Buffer
}

const tapMax = 64 << 10

func (t *bodyTap) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if room := tapMax - t.buf.Len(); room > 0 {
		t.buf.Write(p[:min(n, room)])
	}
	return n, err
}

// audit records every write (any method but GET, HEAD and OPTIONS) once it
// is answered: changes, refusals of known callers (a reader's forged write
// is there, 403), and writes on routes open to machines. Failed sign-ins
// are not (they are logged and throttled).
func (s *Server) audit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions || unaudited[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		note := &auditNote{caller: auth.CallerFrom(r.Context())}
		module := r.Method == http.MethodPost && r.URL.Path == "/api/v2/barclamps"
		var tap *bodyTap
		if r.Body != nil && !module {
			tap = &bodyTap{ReadCloser: r.Body}
			r.Body = tap
		}
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), auditKey{}, note)))
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		if note.caller == nil && (rec.status == http.StatusUnauthorized || rec.status == http.StatusTooManyRequests) {
			return
		}
		e := AuditEntry{At: time.Now().UTC(), Remote: r.RemoteAddr, Method: r.Method, Path: r.URL.RequestURI(), Status: rec.status}
		e.RequestID, _ = r.Context().Value(requestIDKey).(string)
		if c := note.caller; c != nil {
			e.Username, e.Role, e.Scheme = c.Username, string(c.Role), c.Scheme
			if c.Scheme == "internal" {
				e.Remote = "in-process"
			}
		}
		switch {
		case module:
			e.Summary = "a barclamp module"
			if r.ContentLength > 0 {
				e.Summary += ", " + strconv.FormatInt(r.ContentLength, 10) + " bytes"
			}
		case tap != nil:
			if tap.buf.Len() == 0 {
				// Refused before the handler read it: read it now.
				io.Copy(io.Discard, io.LimitReader(tap, tapMax)) //nolint:errcheck
			}
			e.Summary = summarize(r.Header.Get("Content-Type"), tap.buf.Bytes())
		}
		if err := s.auditLog.write(&e); err != nil {
			loggerFrom(r).Error("audit log: a write was not recorded", "method", e.Method, "path", e.Path, "user", e.Username, "error", err)
		}
	})
}

// auditWriter commits audit entries in groups: a write waits until its
// entry is committed (nothing is lost if the server dies after answering),
// and entries of concurrent writes share one transaction.
type auditWriter struct {
	db *gorm.DB

	mu      sync.Mutex
	queue   []pendingEntry
	running bool
}

type pendingEntry struct {
	e    *AuditEntry
	done chan error
}

func (a *auditWriter) write(e *AuditEntry) error {
	p := pendingEntry{e, make(chan error, 1)}
	a.mu.Lock()
	a.queue = append(a.queue, p)
	start := !a.running
	a.running = true
	a.mu.Unlock()
	if start {
		go a.flush()
	}
	return <-p.done
}

// flush commits what is queued, again and again, and ends when nothing is.
func (a *auditWriter) flush() {
	for {
		a.mu.Lock()
		batch := a.queue
		a.queue = nil
		if len(batch) == 0 {
			a.running = false
			a.mu.Unlock()
			return
		}
		a.mu.Unlock()
		entries := make([]*AuditEntry, len(batch))
		for i, p := range batch {
			entries[i] = p.e
		}
		err := a.db.CreateInBatches(entries, 200).Error
		for _, p := range batch {
			p.done <- err
		}
	}
}

// summarize compacts a request body for the audit log: JSON and forms
// with their secrets hidden, anything else by its size.
func summarize(contentType string, body []byte) string {
	if len(bytes.TrimSpace(body)) == 0 {
		return ""
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	var v any
	switch {
	case json.Unmarshal(body, &v) == nil:
	case mt == "application/x-www-form-urlencoded" || strings.Contains(mt, "json"):
		// The seed's clients send forms labelled as JSON.
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return strconv.Itoa(len(body)) + " bytes of " + mt
		}
		m := map[string]any{}
		for k, vs := range vals {
			m[k] = vs[len(vs)-1]
		}
		v = m
	default:
		if mt == "" {
			mt = "a body"
		}
		return strconv.Itoa(len(body)) + " bytes of " + mt
	}
	b, _ := json.Marshal(redact(v))
	if len(b) > auditSummaryMax {
		return string(b[:auditSummaryMax]) + "…"
	}
	return string(b)
}

func redact(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if secretKey.MatchString(k) {
				if val != nil && val != "" {
					x[k] = "***"
				}
				continue
			}
			x[k] = redact(val)
		}
	case []any:
		for i := range x {
			x[i] = redact(x[i])
		}
	}
	return v
}

// listAudit answers GET /api/v2/audit (admins): newest first, filtered by
// user, method, path (a prefix), status, since and until (RFC 3339 times,
// or durations back from now such as 1h), paged by limit (default 100, at
// most 1000) and offset.
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	q := s.store.DB.WithContext(r.Context()).Model(&AuditEntry{})
	limit, offset := 100, 0
	now := time.Now().UTC()
	for key, vals := range r.URL.Query() {
		v := vals[len(vals)-1]
		switch key {
		case "user":
			q = q.Where("username = ?", v)
		case "method":
			q = q.Where("method = ?", strings.ToUpper(v))
		case "path":
			q = q.Where(`path LIKE ? ESCAPE '\'`, strings.NewReplacer("%", `\%`, "_", `\_`).Replace(v)+"%")
		case "status":
			n, err := strconv.Atoi(v)
			if err != nil || n < 100 || n > 599 {
				writeError(w, r, "audit", model.BadRequest("status must be an HTTP status, got '%s'", v))
				return
			}
			q = q.Where("status = ?", n)
		case "since", "until":
			t, err := parseSince(v, now)
			if err != nil {
				writeError(w, r, "audit", model.BadRequest("%s: %v", key, err))
				return
			}
			if key == "since" {
				q = q.Where("at >= ?", t)
			} else {
				q = q.Where("at < ?", t)
			}
		case "limit", "offset":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || (key == "limit" && (n == 0 || n > 1000)) {
				writeError(w, r, "audit", model.BadRequest("%s must be an integer (limit 1 to 1000), got '%s'", key, v))
				return
			}
			if key == "limit" {
				limit = n
			} else {
				offset = n
			}
		default:
			writeError(w, r, "audit", model.BadRequest("unknown filter '%s': use user, method, path, status, since, until, limit, offset", key))
			return
		}
	}
	var total int64
	if err := q.Count(&total).Error; err != nil {
		writeError(w, r, "audit", err)
		return
	}
	var list []AuditEntry
	if err := q.Order("id DESC").Limit(limit).Offset(offset).Find(&list).Error; err != nil {
		writeError(w, r, "audit", err)
		return
	}
	w.Header().Set("X-Total-Count", strconv.FormatInt(total, 10))
	writeList(w, r, "audit", list)
}

// parseSince reads an RFC 3339 time or a duration back from now.
func parseSince(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC(), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, errBadSince
	}
	return now.Add(-d), nil
}

var errBadSince = model.BadRequest("want an RFC 3339 time (2026-11-23T12:00:00Z) or a duration back from now (1h)")

// PruneAudit deletes the audit entries older than keep and says how many.
func (s *Server) PruneAudit(ctx context.Context, keep time.Duration) (int64, error) {
	res := s.store.DB.WithContext(ctx).Where("at < ?", time.Now().UTC().Add(-keep)).Delete(&AuditEntry{})
	return res.RowsAffected, res.Error
}

// PruneEvents deletes the event log entries older than keep and says how
// many.
func (s *Server) PruneEvents(ctx context.Context, keep time.Duration) (int64, error) {
	return s.bus.Prune(ctx, keep)
}

// KeepPruned prunes the audit log (entries older than audit) and the event
// log (older than events) now and every hour until ctx ends; 0 keeps every
// entry of that log. Every replica may run it: the deletes are idempotent.
func (s *Server) KeepPruned(ctx context.Context, audit, events time.Duration) {
	logs := []struct {
		name  string
		keep  time.Duration
		prune func(context.Context, time.Duration) (int64, error)
	}{{"audit log", audit, s.PruneAudit}, {"event log", events, s.PruneEvents}}
	for {
		for _, l := range logs {
			if l.keep <= 0 {
				continue
			}
			n, err := l.prune(ctx, l.keep)
			if err != nil && ctx.Err() == nil {
				s.log.Warn(l.name+": pruning failed", "error", err)
			} else if n > 0 {
				s.log.Info(l.name+": pruned old entries", "deleted", n, "older_than", l.keep)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Hour):
		}
	}
}
