package store

import (
	"database/sql/driver"
	"errors"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsUnavailable reports whether err means the database cannot be reached
// or is shutting down or starting (not that the request was wrong): the
// server answers 503 and a client should try again. It covers PostgreSQL
// refusing or dropping connections (restart, fail-over, network) and its
// shutdown and start-up codes.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		// 08: connection exception; 57P: operator intervention (shutdown,
		// crash, cannot connect now); 53300: too many connections.
		return strings.HasPrefix(pg.Code, "08") || strings.HasPrefix(pg.Code, "57P") || pg.Code == "53300"
	}
	var ce *pgconn.ConnectError
	var ne *net.OpError
	switch {
	case errors.As(err, &ce), errors.As(err, &ne), errors.Is(err, driver.ErrBadConn), pgconn.SafeToRetry(err),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "conn closed") || strings.Contains(msg, "failed to connect") ||
		strings.Contains(msg, "receive message failed") // pgx: the connection dropped mid-query
}

// IsFull reports whether err means the database ran out of space (SQLite's
// "database or disk is full", PostgreSQL's disk_full): the server answers
// 507 and nothing of the request was written.
func IsFull(err error) bool {
	if err == nil {
		return false
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "53100"
	}
	return strings.Contains(err.Error(), "database or disk is full") || errors.Is(err, syscall.ENOSPC)
}
