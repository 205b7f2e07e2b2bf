// Package store opens crowbar's database (SQLite or PostgreSQL through gorm),
// keeps its schema current with versioned migrations and offers the generic
// lookups every resource uses.
package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/hashicorp/go-hclog"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Dialect names the database behind a Store.
type Dialect string

// The two databases crowbar runs on.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// Options tune Open; the zero value is sane.
type Options struct {
	// MaxOpenConns caps the connection pool (default: 16 on PostgreSQL, 8 on SQLite).
	MaxOpenConns int
	// Logger receives slow-query and error logs (default: discard).
	Logger hclog.Logger
	// SlowQuery is the duration above which a query is logged (default 500ms).
	SlowQuery time.Duration
}

// Store is an open, migrated database.
type Store struct {
	DB      *gorm.DB
	Dialect Dialect
	log     hclog.Logger
}

// IsPostgres reports whether dsn names a PostgreSQL database.
func IsPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Open connects to dsn (a postgres:// URL, or a SQLite file path with an
// optional sqlite:// prefix), applies pending migrations and returns the
// store. It refuses a database whose schema is newer than this binary knows.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if opts.SlowQuery == 0 {
		opts.SlowQuery = 500 * time.Millisecond
	}
	cfg := &gorm.Config{
		Logger:                 newGormLogger(log, opts.SlowQuery),
		SkipDefaultTransaction: true,
		PrepareStmt:            true,
		NowFunc:                func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) },
	}
	s := &Store{log: log}
	var dialector gorm.Dialector
	if IsPostgres(dsn) {
		s.Dialect = Postgres
		dialector = postgres.Open(dsn)
		if opts.MaxOpenConns == 0 {
			opts.MaxOpenConns = 16
		}
	} else {
		s.Dialect = SQLite
		path, err := sqliteDSN(dsn)
		if err != nil {
			return nil, err
		}
		dialector = sqlite.Open(path)
		if opts.MaxOpenConns == 0 {
			opts.MaxOpenConns = 8
		}
	}
	db, err := gorm.Open(dialector, cfg)
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", s.Dialect, err)
	}
	s.DB = db
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	sqlDB.SetMaxOpenConns(opts.MaxOpenConns)
	sqlDB.SetMaxIdleConns(opts.MaxOpenConns)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	if s.Dialect == Postgres {
		// Recycle connections so a fail-over or a restarted server is picked up.
		sqlDB.SetConnMaxLifetime(30 * time.Minute)
	}
	if err := sqlDB.PingContext(ctx); err != nil {
		sqlDB.Close()
		return nil, fmt.Errorf("connect to %s database: %w", s.Dialect, err)
	}
	if err := s.migrate(ctx); err != nil {
		sqlDB.Close()
		return nil, err
	}
	return s, nil
}

// sqliteDSN turns a file path into the driver's DSN with the pragmas crowbar
// relies on: foreign keys, WAL so readers never wait for the writer, a busy
// timeout, and IMMEDIATE transactions so two writers queue instead of failing
// with SQLITE_BUSY when one upgrades its read lock.
func sqliteDSN(dsn string) (string, error) {
	path := strings.TrimPrefix(dsn, "sqlite://")
	path = strings.TrimPrefix(path, "sqlite:")
	if path == "" {
		return "", errors.New("empty SQLite database path")
	}
	if path != ":memory:" {
		if dir := filepath.Dir(path); dir != "" {
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return "", fmt.Errorf("create database directory: %w", err)
			}
		}
	}
	q := url.Values{}
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	return "file:" + path + "?" + q.Encode(), nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.DB.DB()
	if err != nil {
		return err
	}
	return sqlDB.PingContext(ctx)
}

// Close closes the connection pool.
func (s *Store) Close() error {
	sqlDB, err := s.DB.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// WithContext returns a session bound to ctx.
func (s *Store) WithContext(ctx context.Context) *gorm.DB { return s.DB.WithContext(ctx) }

// Tx runs fn in a transaction.
func (s *Store) Tx(ctx context.Context, fn func(tx *gorm.DB) error) error {
	return s.DB.WithContext(ctx).Transaction(fn)
}

type gormLogger struct {
	log  hclog.Logger
	slow time.Duration
}

func newGormLogger(log hclog.Logger, slow time.Duration) logger.Interface {
	return &gormLogger{log: log.Named("db"), slow: slow}
}

func (g *gormLogger) LogMode(logger.LogLevel) logger.Interface { return g }
func (g *gormLogger) Info(_ context.Context, msg string, args ...any) {
	g.log.Info(fmt.Sprintf(msg, args...))
}
func (g *gormLogger) Warn(_ context.Context, msg string, args ...any) {
	g.log.Warn(fmt.Sprintf(msg, args...))
}
func (g *gormLogger) Error(_ context.Context, msg string, args ...any) {
	g.log.Error(fmt.Sprintf(msg, args...))
}
func (g *gormLogger) Trace(_ context.Context, begin time.Time, fc func() (string, int64), err error) {
	took := time.Since(begin)
	switch {
	case err != nil && !errors.Is(err, gorm.ErrRecordNotFound) && !errors.Is(err, context.Canceled):
		if g.log.IsDebug() {
			sql, rows := fc()
			g.log.Debug("query failed", "sql", sql, "rows", rows, "took", took, "error", err)
		}
	case took > g.slow:
		sql, rows := fc()
		g.log.Warn("slow query", "sql", sql, "rows", rows, "took", took)
	case g.log.IsTrace():
		sql, rows := fc()
		g.log.Trace("query", "sql", sql, "rows", rows, "took", took)
	}
}
