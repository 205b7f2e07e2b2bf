package auth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/crowbar-go/crowbar/core/model"
	"gorm.io/gorm"
)

// InstallUser is the admin account the install key belongs to.
const InstallUser = "crowbar"

// InstallKeyResult says what EnsureInstallKey did.
type InstallKeyResult int

// What EnsureInstallKey did.
const (
	KeyKept     InstallKeyResult = iota // the key file and its user were in place
	KeyCreated                          // first start: user and key file created
	KeyRotated                          // --reset-admin-key: new password written
	KeyRestored                         // the key file existed but its user did not (a new database): user re-created from it
	KeyMissing                          // the user exists but the key file is gone: nothing written
)

// EnsureInstallKey makes sure the install key at path and its admin user
// agree. On the first start it creates the user with a random password and
// writes the key file ("user:password", mode 0600). A later start never
// overwrites the file; with reset it rotates the password and rewrites it.
func (s *Service) EnsureInstallKey(ctx context.Context, path string, reset bool) (InstallKeyResult, error) {
	username, password, fileErr := readInstallKey(path)
	if fileErr != nil && !errors.Is(fileErr, os.ErrNotExist) {
		return 0, fileErr
	}
	haveFile := fileErr == nil
	if !haveFile {
		username = InstallUser
	}
	var result InstallKeyResult
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var u model.User
		err := tx.Where("username = ?", username).Take(&u).Error
		exists := err == nil
		if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
			return err
		}
		switch {
		case reset:
			if password, err = newPassword(); err != nil {
				return err
			}
			result = KeyRotated
		case haveFile && exists:
			if u.DigestRealm == s.Realm() {
				return nil // KeyKept
			}
			// The realm changed: the file still has the password, so re-derive.
		case haveFile:
			result = KeyRestored
		case exists:
			result = KeyMissing
			return nil
		default:
			if password, err = newPassword(); err != nil {
				return err
			}
			result = KeyCreated
		}
		u.Username, u.Role, u.Admin, u.APIAccess = username, string(RoleAdmin), true, true
		s.SetPassword(&u, password)
		if err := tx.Save(&u).Error; err != nil {
			return fmt.Errorf("save install user: %w", err)
		}
		if result == KeyCreated || result == KeyRotated {
			return writeInstallKey(path, username, password)
		}
		return nil
	})
	return result, err
}

func newPassword() (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func readInstallKey(path string) (user, password string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	user, password, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	if !ok || user == "" || password == "" {
		return "", "", fmt.Errorf("install key %s is not of the form user:password", path)
	}
	return user, password, nil
}

// writeInstallKey writes the key atomically with mode 0600.
func writeInstallKey(path, user, password string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("create install key directory: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".install-key-*")
	if err != nil {
		return fmt.Errorf("write install key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(user + ":" + password + "\n"); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write install key: %w", err)
	}
	return nil
}
