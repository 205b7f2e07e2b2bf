package model

import (
	"errors"
	"fmt"
)

// ErrNotFound is matched (with errors.Is) by every NotFoundError.
var ErrNotFound = errors.New("not found")

// NotFoundError says which object of which kind could not be found.
type NotFoundError struct {
	Kind string // singular type, e.g. "node"
	Key  string // the name or id that was asked for
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s '%s' not found", e.Kind, e.Key) }

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// ValidationError reports a value that breaks a rule of the resource; the
// HTTP layer answers it with 422.
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + " " + e.Message
}

// Invalid builds a ValidationError for field.
func Invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// ConflictError reports a request that conflicts with the current state
// (an illegal state change, a delete of something still in use); 409.
type ConflictError struct{ Message string }

func (e *ConflictError) Error() string { return e.Message }

// Conflict builds a ConflictError.
func Conflict(format string, args ...any) error {
	return &ConflictError{Message: fmt.Sprintf(format, args...)}
}

// BadRequestError reports a request that could not be read at all
// (malformed body, wrong JSON type, unknown field); 400.
type BadRequestError struct{ Message string }

func (e *BadRequestError) Error() string { return e.Message }

// BadRequest builds a BadRequestError.
func BadRequest(format string, args ...any) error {
	return &BadRequestError{Message: fmt.Sprintf(format, args...)}
}
