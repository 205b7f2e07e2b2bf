package plugins

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// A barclamp's KV call rides out a database outage within its deadline;
// other errors and a deadline end it at once.
func TestOutlastOutage(t *testing.T) {
	down := &pgconn.PgError{Code: "57P03", Message: "the database system is starting up"}
	calls := 0
	err := outlastOutage(context.Background(), func() error {
		if calls++; calls < 3 {
			return down
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("after two failures: %v, %d calls", err, calls)
	}
	calls = 0
	other := errors.New("no such table")
	if err := outlastOutage(context.Background(), func() error { calls++; return other }); err != other || calls != 1 {
		t.Fatalf("another error: %v, %d calls", err, calls)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	if err := outlastOutage(ctx, func() error { return down }); err != down {
		t.Fatalf("past the deadline: %v", err)
	}
}
