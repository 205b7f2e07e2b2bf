package api

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// A database that cannot be reached is a 503 with Retry-After; one out of
// space a 507; neither is reported as an internal error.
func TestDatabaseFaultsAnswers(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		msg    string
		retry  bool
	}{
		{fmt.Errorf("list nodes: %w", &pgconn.PgError{Code: "57P01"}), 503, "the database is unavailable", true},
		{fmt.Errorf("create node: %w", fmt.Errorf("database or disk is full (13)")), 507, "out of space", false},
	} {
		rec := httptest.NewRecorder()
		writeError(rec, httptest.NewRequest("GET", "/api/v2/nodes", nil), "node", c.err)
		var body ErrorBody
		json.Unmarshal(rec.Body.Bytes(), &body) //nolint:errcheck
		if rec.Code != c.status || body.Status != c.status || !strings.Contains(body.Message, c.msg) ||
			(rec.Header().Get("Retry-After") != "") != c.retry {
			t.Errorf("%v: %d %q Retry-After=%q", c.err, rec.Code, body.Message, rec.Header().Get("Retry-After"))
		}
	}
}
