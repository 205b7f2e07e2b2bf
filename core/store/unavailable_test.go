package store_test

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/crowbar-go/crowbar/core/store"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestUnavailableAndFull(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("list nodes: %w", err) }
	for _, c := range []struct {
		err               error
		unavailable, full bool
	}{
		{&pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}, true, false},
		{&pgconn.PgError{Code: "57P03", Message: "the database system is starting up"}, true, false},
		{&pgconn.PgError{Code: "08006"}, true, false},
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true, false},
		{syscall.ECONNRESET, true, false},
		{errors.New("failed to connect to `user=postgres database=test`: dial error"), true, false},
		{&pgconn.PgError{Code: "53100", Message: "could not extend file"}, false, true},
		{errors.New("database or disk is full (13)"), false, true},
		{&pgconn.PgError{Code: "23505"}, false, false},
		{errors.New("no such table: nodes"), false, false},
		{fmt.Errorf("malformed JSON: %w", errors.New("unexpected EOF")), false, false},
		{nil, false, false},
	} {
		for _, err := range []error{c.err, wrap(c.err)} {
			if c.err == nil && err != nil {
				continue
			}
			if got := store.IsUnavailable(err); got != c.unavailable {
				t.Errorf("IsUnavailable(%v) = %v", err, got)
			}
			if got := store.IsFull(err); got != c.full {
				t.Errorf("IsFull(%v) = %v", err, got)
			}
		}
	}
}
