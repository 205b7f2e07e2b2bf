// Package storetest gives tests a fresh, migrated store on every database
// crowbar supports: a SQLite file in a temporary directory, and (when
// CROWBAR_TEST_POSTGRES names a server) a private PostgreSQL schema that is
// dropped when the test ends. Tests using it may run in parallel.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/crowbar-go/crowbar/core/store"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver for schema set-up
)

// EnvPostgres names the PostgreSQL server tests use, e.g.
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable.
const EnvPostgres = "CROWBAR_TEST_POSTGRES"

// DSN is one database a test can run against.
type DSN struct {
	Dialect store.Dialect
	DSN     string
}

// Databases returns a fresh database of each kind for t: SQLite always,
// PostgreSQL when CROWBAR_TEST_POSTGRES is set. With CI set and the
// variable missing, the test fails rather than silently skipping half.
func Databases(t testing.TB) []DSN {
	t.Helper()
	dbs := []DSN{{Dialect: store.SQLite, DSN: filepath.Join(t.TempDir(), "crowbar.db")}}
	if pg := PostgresDSN(t); pg != "" {
		dbs = append(dbs, DSN{Dialect: store.Postgres, DSN: pg})
	}
	return dbs
}

// PostgresDSN creates a private schema on the test PostgreSQL server and
// returns a DSN whose search_path points at it; "" when no server is
// configured.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvPostgres)
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s must be set in CI", EnvPostgres)
		}
		return ""
	}
	db, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatalf("open %s: %v", EnvPostgres, err)
	}
	defer db.Close()
	var b [6]byte
	rand.Read(b[:]) //nolint:errcheck
	schema := "crowbar_test_" + hex.EncodeToString(b[:])
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema on %s: %v", EnvPostgres, err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer db.Close()
		db.Exec("DROP SCHEMA " + schema + " CASCADE") //nolint:errcheck
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvPostgres, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Each runs fn as a subtest on a fresh, migrated store of every kind.
func Each(t *testing.T, fn func(t *testing.T, s *store.Store)) {
	t.Helper()
	for _, d := range Databases(t) {
		t.Run(string(d.Dialect), func(t *testing.T) {
			fn(t, Open(t, d.DSN))
		})
	}
}

// Open opens and migrates dsn, closing it when the test ends.
func Open(t testing.TB, dsn string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), dsn, store.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// journals record requests and changes rather than hold data: a refused
// request is written to the audit log, a failed sign-in counted, and the
// event log grows with the annealer's work.
var journals = map[string]bool{"audit_log": true, "auth_failures": true, "events": true}

// Snapshot reads every row of every crowbar table but the journals, so a
// test can assert that a refused request changed nothing.
func Snapshot(t testing.TB, s *store.Store) map[string][]map[string]any {
	t.Helper()
	tables, err := s.DB.Migrator().GetTables()
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	sort.Strings(tables)
	snap := map[string][]map[string]any{}
	for _, table := range tables {
		if journals[table] {
			continue
		}
		var rows []map[string]any
		if err := s.DB.Table(table).Order("1").Find(&rows).Error; err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
		if table == "sqlite_sequence" {
			// The journals' AUTOINCREMENT counters move with them.
			kept := rows[:0]
			for _, r := range rows {
				if name, _ := r["name"].(string); !journals[name] {
					kept = append(kept, r)
				}
			}
			rows = kept
		}
		snap[table] = rows
	}
	return snap
}
