package auth

import (
	"context"
	"fmt"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// serverSecret is a row of server_secrets: keys every replica must share
// (the digest nonce key, the JWT signing key).
type serverSecret struct {
	Name  string `gorm:"primaryKey"`
	Value string
}

func (serverSecret) TableName() string { return "server_secrets" }

// LoadOrCreateSecret returns the secret called name, creating it with gen
// the first time. Replicas starting together agree on one value: the
// insert is ignored when another got there first, and all read the winner.
func LoadOrCreateSecret(ctx context.Context, db *gorm.DB, name string, gen func() (string, error)) (string, error) {
	var s serverSecret
	err := db.WithContext(ctx).Where("name = ?", name).Take(&s).Error
	if err == nil {
		return s.Value, nil
	}
	if err != gorm.ErrRecordNotFound {
		return "", fmt.Errorf("read secret %s: %w", name, err)
	}
	v, err := gen()
	if err != nil {
		return "", fmt.Errorf("generate secret %s: %w", name, err)
	}
	if err := db.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).
		Create(&serverSecret{Name: name, Value: v}).Error; err != nil {
		return "", fmt.Errorf("store secret %s: %w", name, err)
	}
	if err := db.WithContext(ctx).Where("name = ?", name).Take(&s).Error; err != nil {
		return "", fmt.Errorf("read secret %s: %w", name, err)
	}
	return s.Value, nil
}
