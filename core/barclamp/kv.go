package barclamp

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// KVEntry is one key of a barclamp's private store.
type KVEntry struct {
	Key      string `json:"key"`
	Value    []byte `json:"value"`
	Revision int64  `json:"revision"`
}

type kvRow struct {
	Barclamp  string `gorm:"primaryKey"`
	KVKey     string `gorm:"column:kv_key;primaryKey"`
	Value     []byte
	Revision  int64
	UpdatedAt time.Time
}

func (kvRow) TableName() string { return "barclamp_kv" }

// MaxKeyLen and MaxValueLen bound what a barclamp may store per key.
const (
	MaxKeyLen   = 1024
	MaxValueLen = 1 << 20
)

// KV is the private key/value store of every barclamp, kept in the
// database. Compare-and-swap is one conditional statement, so of two
// concurrent writers expecting the same revision exactly one wins, on
// SQLite and on PostgreSQL.
type KV struct{ db *gorm.DB }

// NewKV returns the store over db.
func NewKV(db *gorm.DB) *KV { return &KV{db: db} }

func checkKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("kv key must be 1 to %d bytes", MaxKeyLen)
	}
	return nil
}

// Get returns the entry for key; found is false when it does not exist.
func (kv *KV) Get(ctx context.Context, barclamp, key string) (e KVEntry, found bool, err error) {
	var row kvRow
	err = kv.db.WithContext(ctx).Where("barclamp = ? AND kv_key = ?", barclamp, key).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return KVEntry{Key: key}, false, nil
	}
	if err != nil {
		return KVEntry{}, false, err
	}
	return KVEntry{Key: key, Value: row.Value, Revision: row.Revision}, true, nil
}

// CAS writes value under key if the key's current revision is expected (0:
// the key must not exist). It returns the new revision and whether it won.
func (kv *KV) CAS(ctx context.Context, barclamp, key string, value []byte, expected int64) (int64, bool, error) {
	if err := checkKey(key); err != nil {
		return 0, false, err
	}
	if len(value) > MaxValueLen {
		return 0, false, fmt.Errorf("kv value is %d bytes; at most %d", len(value), MaxValueLen)
	}
	if value == nil {
		value = []byte{}
	}
	now := time.Now().UTC()
	db := kv.db.WithContext(ctx)
	var res *gorm.DB
	if expected == 0 {
		res = db.Clauses(clause.OnConflict{DoNothing: true}).
			Create(&kvRow{Barclamp: barclamp, KVKey: key, Value: value, Revision: 1, UpdatedAt: now})
	} else {
		res = db.Model(&kvRow{}).Where("barclamp = ? AND kv_key = ? AND revision = ?", barclamp, key, expected).
			Updates(map[string]any{"value": value, "revision": gorm.Expr("revision + 1"), "updated_at": now})
	}
	if res.Error != nil {
		return 0, false, res.Error
	}
	if res.RowsAffected != 1 {
		return 0, false, nil
	}
	return expected + 1, true, nil
}

// List returns the entries whose key starts with prefix, in key order.
func (kv *KV) List(ctx context.Context, barclamp, prefix string) ([]KVEntry, error) {
	var rows []kvRow
	q := kv.db.WithContext(ctx).Where("barclamp = ?", barclamp)
	if prefix != "" {
		// substr compares bytes on both databases, unlike LIKE (escapes) or
		// range comparisons (PostgreSQL collations).
		q = q.Where("substr(kv_key, 1, ?) = ?", len([]rune(prefix)), prefix)
	}
	if err := q.Order("kv_key").Find(&rows).Error; err != nil {
		return nil, err
	}
	out := make([]KVEntry, len(rows))
	for i, r := range rows {
		out[i] = KVEntry{Key: r.KVKey, Value: r.Value, Revision: r.Revision}
	}
	return out, nil
}

// Delete removes key if its revision is expected (0: whatever it is) and
// reports whether it removed it.
func (kv *KV) Delete(ctx context.Context, barclamp, key string, expected int64) (bool, error) {
	q := kv.db.WithContext(ctx).Where("barclamp = ? AND kv_key = ?", barclamp, key)
	if expected != 0 {
		q = q.Where("revision = ?", expected)
	}
	res := q.Delete(&kvRow{})
	return res.RowsAffected == 1, res.Error
}
