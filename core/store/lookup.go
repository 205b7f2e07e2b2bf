package store

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"

	"github.com/crowbar-go/crowbar/core/model"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// ParseID returns key as an id when it is all digits. Natural-key names may
// not start with a digit, so a key is never both.
func ParseID(key string) (int64, bool) {
	if key == "" || key[0] < '0' || key[0] > '9' {
		return 0, false
	}
	id, err := strconv.ParseInt(key, 10, 64)
	return id, err == nil
}

// Find loads the object of kind from db by numeric id or, when nameCol is
// set, by name. A miss is a *model.NotFoundError.
func Find[T any](ctx context.Context, db *gorm.DB, kind, nameCol, key string) (*T, error) {
	obj := new(T)
	q := db.WithContext(ctx)
	if id, ok := ParseID(key); ok {
		q = q.Where(clause.Eq{Column: clause.Column{Name: "id"}, Value: id})
	} else if nameCol != "" {
		q = q.Where(clause.Eq{Column: clause.Column{Name: nameCol}, Value: key})
	} else {
		return nil, &model.NotFoundError{Kind: kind, Key: key}
	}
	if err := q.Take(obj).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, &model.NotFoundError{Kind: kind, Key: key}
		}
		return nil, err
	}
	return obj, nil
}

// ResolveID turns a name or id of kind stored in table into the id, checking
// that the object exists.
func ResolveID(ctx context.Context, db *gorm.DB, kind, table, nameCol, key string) (int64, error) {
	var ids []int64
	q := db.WithContext(ctx).Table(table).Select("id").Limit(1)
	if id, ok := ParseID(key); ok {
		q = q.Where(clause.Eq{Column: clause.Column{Name: "id"}, Value: id})
	} else if nameCol != "" {
		q = q.Where(clause.Eq{Column: clause.Column{Name: nameCol}, Value: key})
	} else {
		return 0, &model.NotFoundError{Kind: kind, Key: key}
	}
	if err := q.Pluck("id", &ids).Error; err != nil {
		return 0, err
	}
	if len(ids) == 0 {
		return 0, &model.NotFoundError{Kind: kind, Key: key}
	}
	return ids[0], nil
}

var (
	sqliteUnique = regexp.MustCompile(`UNIQUE constraint failed: ((?:\w+\.\w+(?:, )?)+)`)
	pgUniqueKey  = regexp.MustCompile(`Key \(([^)]+)\)=\(([^)]*)\)`)
)

// Translate turns a database error into a domain error where it is one the
// caller can act on: a unique violation becomes a *model.ValidationError on
// the column, a foreign-key violation a *model.ConflictError. Other errors
// pass through.
func Translate(err error) error {
	if err == nil {
		return nil
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch pg.Code {
		case "23505": // unique_violation
			col := "name"
			if m := pgUniqueKey.FindStringSubmatch(pg.Detail); m != nil {
				if strings.Contains(m[1], ",") {
					return duplicate(strings.Split(m[1], ", "))
				}
				return model.Invalid(m[1], "'%s' is already taken", m[2])
			}
			return model.Invalid(col, "is already taken")
		case "23503": // foreign_key_violation
			return model.Conflict("%s", pgFKMessage(pg))
		}
		return err
	}
	msg := err.Error()
	if m := sqliteUnique.FindStringSubmatch(msg); m != nil {
		var cols []string
		for _, c := range strings.Split(m[1], ", ") {
			_, col, _ := strings.Cut(c, ".")
			cols = append(cols, col)
		}
		if len(cols) > 1 {
			return duplicate(cols)
		}
		return model.Invalid(cols[0], "is already taken")
	}
	if strings.Contains(msg, "FOREIGN KEY constraint failed") {
		return model.Conflict("the change refers to an object that does not exist, or removes one that is still in use")
	}
	return err
}

// duplicate reports a clash on a unique combination of columns: the object
// exists already, a conflict rather than a bad value.
func duplicate(cols []string) error {
	return model.Conflict("an object with the same %s already exists", strings.Join(cols, " and "))
}

func pgFKMessage(pg *pgconn.PgError) string {
	if strings.Contains(pg.Detail, "is still referenced") {
		return "the object is still in use: " + pg.Detail
	}
	return "the change refers to an object that does not exist: " + pg.Detail
}
