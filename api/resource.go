package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/gorilla/mux"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Ref lets a body or a list filter name a related object by name or id:
// {"deployment": "test1"} fills deployment_id.
type Ref struct {
	Key     string // the name used in bodies and filters, e.g. "deployment"
	Field   string // the id field it fills, e.g. "deployment_id"
	Kind    string // the related object's type, for messages
	Table   string // the related object's table
	NameCol string // its natural-key column ("" when it has none)
}

// Ops says which verbs a resource serves.
type Ops uint8

// The verbs of a resource.
const (
	OpList Ops = 1 << iota
	OpGet
	OpCreate
	OpUpdate
	OpDelete

	ReadOnly = OpList | OpGet
	CRUD     = OpList | OpGet | OpCreate | OpUpdate | OpDelete
)

// Resource serves one collection of T under /api/v2 with the generic
// OpenCrowbar pattern: name-or-id lookup, references by name, filters and
// paging, x-return-attributes, strict bodies, and JSON errors. A resource
// adds only its own rules: which fields a client may write and which refer
// to other objects; the domain's per-object rules live in core/model and
// core/store.
type Resource[T any] struct {
	Type       string   // singular, used in the content type and messages
	Path       string   // plural, the URL segment
	NameCol    string   // natural key column; "" when the type has none
	Writable   []string // fields a client may set
	CreateOnly []string // fields a client may set only when creating
	Refs       []Ref
	Ops        Ops
	// Hook, when set, runs after validation and before the write, in the
	// same transaction: for rules that need the database or the server.
	Hook func(tx *gorm.DB, obj *T, creating bool) error
	// Changed, when set, runs after a create, update or delete committed.
	Changed func(obj *T)
	// Created and Deleted, when set, run after a create or a delete
	// committed (after Changed).
	Created, Deleted func(obj *T)
	// Saved, when set, runs after the row is written, in the same
	// transaction (the object has its id).
	Saved func(tx *gorm.DB, obj *T, creating bool) error
	// Present, when set, fills fields that are not stored before an object
	// is answered.
	Present func(obj *T)

	store    *store.Store
	fields   fieldSet
	writable map[string]bool
	onCreate map[string]bool
}

// init prepares the resource's field tables; it panics on a descriptor that
// names fields T lacks, a programming error caught by any test.
func (rs *Resource[T]) init(s *store.Store) *Resource[T] {
	rs.store = s
	rs.fields = fieldsOf(reflect.TypeOf(new(T)).Elem())
	rs.writable = map[string]bool{}
	rs.onCreate = map[string]bool{}
	for _, f := range rs.Writable {
		rs.mustHave(f)
		rs.writable[f] = true
	}
	for _, f := range rs.CreateOnly {
		rs.mustHave(f)
		rs.onCreate[f] = true
	}
	for _, ref := range rs.Refs {
		rs.mustHave(ref.Field)
	}
	return rs
}

func (rs *Resource[T]) mustHave(f string) {
	if _, ok := rs.fields[f]; !ok {
		panic("api: resource " + rs.Path + " names unknown field " + f)
	}
}

// Mount registers the resource's routes under r.
func (rs *Resource[T]) Mount(r prefixed) {
	base := "/" + rs.Path
	one := base + "/{id}"
	if rs.Ops&OpList != 0 {
		r.HandleFunc(base, rs.List).Methods(http.MethodGet)
	}
	if rs.Ops&OpCreate != 0 {
		r.HandleFunc(base, rs.Create).Methods(http.MethodPost)
	}
	if rs.Ops&OpGet != 0 {
		r.HandleFunc(one, rs.Get).Methods(http.MethodGet)
	}
	if rs.Ops&OpUpdate != 0 {
		r.HandleFunc(one, rs.Update).Methods(http.MethodPut, http.MethodPatch)
	}
	if rs.Ops&OpDelete != 0 {
		r.HandleFunc(one, rs.Delete).Methods(http.MethodDelete)
	}
}

// Find loads one object by the name or id in key.
func (rs *Resource[T]) Find(ctx context.Context, db *gorm.DB, key string) (*T, error) {
	return store.Find[T](ctx, db, rs.Type, rs.NameCol, key)
}

// Get answers GET /:path/:id.
func (rs *Resource[T]) Get(w http.ResponseWriter, r *http.Request) {
	obj, err := rs.Find(r.Context(), rs.store.DB, mux.Vars(r)["id"])
	if err != nil {
		writeError(w, r, rs.Type, err)
		return
	}
	rs.present(obj)
	writeObject(w, r, http.StatusOK, rs.Type, obj)
}

func (rs *Resource[T]) present(obj *T) {
	if rs.Present != nil {
		rs.Present(obj)
	}
}

// List answers GET /:path.
func (rs *Resource[T]) List(w http.ResponseWriter, r *http.Request) {
	rs.ListScoped(w, r, nil)
}

// ListScoped answers a list narrowed by scope (for nested routes such as
// /nodes/:id/node_roles), with the generic filters and paging on top.
func (rs *Resource[T]) ListScoped(w http.ResponseWriter, r *http.Request, scope func(*gorm.DB) *gorm.DB) {
	ctx := r.Context()
	q := rs.store.WithContext(ctx).Model(new(T))
	if scope != nil {
		q = scope(q)
	}
	limit, offset, paged := -1, 0, false
	for key, vals := range r.URL.Query() {
		v := vals[len(vals)-1]
		switch key {
		case "limit", "offset":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				writeError(w, r, rs.Type, model.BadRequest("%s must be a non-negative integer, got '%s'", key, v))
				return
			}
			if key == "limit" {
				limit = n
			} else {
				offset = n
			}
			paged = true
		case "search":
			if rs.NameCol == "" {
				writeError(w, r, rs.Type, model.BadRequest("%s cannot be searched by name", rs.Path))
				return
			}
			// Case-insensitive substring of the name; % and _ match themselves.
			pat := "%" + likeEscaper.Replace(strings.ToLower(v)) + "%"
			q = q.Where("LOWER("+rs.NameCol+") LIKE ? ESCAPE '\\'", pat)
		default:
			col, val, err := rs.filter(ctx, key, v)
			if err != nil {
				writeError(w, r, rs.Type, err)
				return
			}
			if val == nil {
				q = q.Where(clause.Eq{Column: clause.Column{Name: col}, Value: nil})
			} else {
				q = q.Where(clause.Eq{Column: clause.Column{Name: col}, Value: val})
			}
		}
	}
	q = q.Session(&gorm.Session{})
	var items []T
	if err := q.Order(clause.OrderByColumn{Column: clause.Column{Table: clause.CurrentTable, Name: "id"}}).
		Limit(limit).Offset(offset).Find(&items).Error; err != nil {
		writeError(w, r, rs.Type, err)
		return
	}
	total := int64(len(items))
	if paged {
		if err := q.Count(&total).Error; err != nil {
			writeError(w, r, rs.Type, err)
			return
		}
	}
	for i := range items {
		rs.present(&items[i])
	}
	w.Header().Set("X-Total-Count", strconv.FormatInt(total, 10))
	writeList(w, r, rs.Type, items)
}

var likeEscaper = strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`)

// filter turns one query parameter into a column and a typed value.
func (rs *Resource[T]) filter(ctx context.Context, key, v string) (string, any, error) {
	if ref := findRef(rs.Refs, key); ref != nil {
		id, err := store.ResolveID(ctx, rs.store.DB, ref.Kind, ref.Table, ref.NameCol, v)
		if err != nil {
			return "", nil, filterError(key, err)
		}
		return ref.Field, id, nil
	}
	f, ok := rs.fields[key]
	if !ok || f.typ == jsonType || f.typ == stringListType {
		return "", nil, model.BadRequest("cannot filter %s by '%s'; filters: %s", rs.Path, key, strings.Join(rs.filterNames(), ", "))
	}
	raw, err := formValue(f, v)
	if err != nil {
		return "", nil, err
	}
	var val any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&val); err != nil {
		return "", nil, model.BadRequest("filter '%s': %v", key, err)
	}
	if n, ok := val.(json.Number); ok {
		i, _ := n.Int64()
		val = i
	}
	return key, val, nil
}

// filterError reports a reference to a missing object as a validation
// error on the field that named it ("deployment 'x' not found").
func filterError(key string, err error) error {
	var nf *model.NotFoundError
	if errors.As(err, &nf) {
		return model.Invalid(key, "'%s' not found", nf.Key)
	}
	return err
}

func (rs *Resource[T]) filterNames() []string {
	var names []string
	for name, f := range rs.fields {
		if f.typ != jsonType && f.typ != stringListType {
			names = append(names, name)
		}
	}
	for _, ref := range rs.Refs {
		names = append(names, ref.Key)
	}
	if rs.NameCol != "" {
		names = append(names, "search")
	}
	return slices.Sorted(maps.Keys(toSet(names)))
}

func toSet(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// Create answers POST /:path.
func (rs *Resource[T]) Create(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r, rs.fields, rs.Refs)
	if err != nil {
		writeError(w, r, rs.Type, err)
		return
	}
	obj := new(T)
	err = rs.store.Tx(r.Context(), func(tx *gorm.DB) error {
		if err := rs.Apply(r.Context(), tx, obj, body, true); err != nil {
			return err
		}
		if err := store.Translate(tx.Create(obj).Error); err != nil {
			return err
		}
		if rs.Saved != nil {
			return rs.Saved(tx, obj, true)
		}
		return nil
	})
	if err != nil {
		writeError(w, r, rs.Type, err)
		return
	}
	rs.changed(obj)
	if rs.Created != nil {
		rs.Created(obj)
	}
	rs.present(obj)
	writeObject(w, r, http.StatusCreated, rs.Type, obj)
}

// Update answers PUT /:path/:id: the fields in the body replace the stored
// ones; the others keep their values.
func (rs *Resource[T]) Update(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r, rs.fields, rs.Refs)
	if err != nil {
		writeError(w, r, rs.Type, err)
		return
	}
	var obj, old *T
	err = rs.store.Tx(r.Context(), func(tx *gorm.DB) error {
		var err error
		obj, err = rs.Find(r.Context(), tx.Clauses(clause.Locking{Strength: "UPDATE"}), mux.Vars(r)["id"])
		if err != nil {
			return err
		}
		before := *obj
		old = &before
		if err := rs.Apply(r.Context(), tx, obj, body, false); err != nil {
			return err
		}
		return store.Translate(tx.Save(obj).Error)
	})
	if err != nil {
		writeError(w, r, rs.Type, err)
		return
	}
	rs.changed(old)
	rs.changed(obj)
	rs.present(obj)
	writeObject(w, r, http.StatusOK, rs.Type, obj)
}

// Delete answers DELETE /:path/:id after the domain's delete rules.
func (rs *Resource[T]) Delete(w http.ResponseWriter, r *http.Request) {
	var obj *T
	err := rs.store.Tx(r.Context(), func(tx *gorm.DB) error {
		var err error
		obj, err = rs.Find(r.Context(), tx.Clauses(clause.Locking{Strength: "UPDATE"}), mux.Vars(r)["id"])
		if err != nil {
			return err
		}
		if err := store.BeforeDelete(tx, obj); err != nil {
			return err
		}
		return store.Translate(tx.Delete(obj).Error)
	})
	if err != nil {
		writeError(w, r, rs.Type, err)
		return
	}
	rs.changed(obj)
	if rs.Deleted != nil {
		rs.Deleted(obj)
	}
	writeEmpty(w, rs.Type)
}

func (rs *Resource[T]) changed(obj *T) {
	if rs.Changed != nil && obj != nil {
		rs.Changed(obj)
	}
}

// Apply merges body into obj: it drops the fields the server owns (id and
// timestamps), resolves references, refuses unknown fields and changes to
// read-only ones, decodes with the field types, then runs the model's
// defaults (on create), normalisation and validation, and checks that the
// name is free.
func (rs *Resource[T]) Apply(ctx context.Context, tx *gorm.DB, obj *T, body map[string]json.RawMessage, creating bool) error {
	patch := make(map[string]json.RawMessage, len(body))
	var current map[string]json.RawMessage
	for _, key := range slices.Sorted(maps.Keys(body)) {
		val := body[key]
		ref := findRef(rs.Refs, key)
		if ref == nil {
			ref = rs.refFor(key)
		}
		switch {
		case key == "id" || key == "created_at" || key == "updated_at":
			continue
		case rs.canWrite(key, creating) || (ref != nil && ref.Key == key && rs.canWrite(ref.Field, creating)):
			if ref != nil {
				id, err := rs.resolveRef(ctx, tx, ref, key, val)
				if err != nil {
					return err
				}
				if other, ok := body[ref.Field]; ok && key == ref.Key && !jsonEqual(other, id) {
					return model.Invalid(ref.Key, "'%s' and '%s' name different objects", ref.Key, ref.Field)
				}
				val = id
				key = ref.Field
			}
			patch[key] = val
		case rs.known(key):
			if current == nil {
				b, err := json.Marshal(obj)
				if err != nil {
					return err
				}
				if err := json.Unmarshal(b, &current); err != nil {
					return err
				}
			}
			name := key
			if ref != nil && ref.Key == key {
				name = ref.Field
			}
			if !jsonEqual(current[name], val) {
				if rs.onCreate[name] {
					return model.Invalid(key, "can only be set when the %s is created", rs.Type)
				}
				return model.Invalid(key, "is read-only")
			}
		default:
			return model.BadRequest("unknown field '%s' for %s; writable fields: %s",
				key, rs.Type, strings.Join(rs.writableNames(creating), ", "))
		}
	}
	if len(patch) > 0 {
		b, err := json.Marshal(patch)
		if err != nil {
			return err
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(obj); err != nil {
			return typeError(err, rs.fields)
		}
	}
	if d, ok := any(obj).(model.Defaulter); ok && creating {
		d.Defaults()
	}
	if n, ok := any(obj).(model.Normalizer); ok {
		n.Normalize()
	}
	if v, ok := any(obj).(model.Validator); ok {
		if err := v.Validate(); err != nil {
			return err
		}
	}
	if err := rs.checkName(ctx, tx, obj); err != nil {
		return err
	}
	if rs.Hook != nil {
		return rs.Hook(tx, obj, creating)
	}
	return nil
}

func (rs *Resource[T]) canWrite(key string, creating bool) bool {
	return rs.writable[key] || (creating && rs.onCreate[key])
}

func (rs *Resource[T]) known(key string) bool {
	if _, ok := rs.fields[key]; ok {
		return true
	}
	return findRef(rs.Refs, key) != nil
}

// refFor returns the Ref whose id field is key (deployment_id → deployment).
func (rs *Resource[T]) refFor(key string) *Ref {
	for i := range rs.Refs {
		if rs.Refs[i].Field == key {
			return &rs.Refs[i]
		}
	}
	return nil
}

func (rs *Resource[T]) writableNames(creating bool) []string {
	set := map[string]bool{}
	for f := range rs.writable {
		set[f] = true
	}
	if creating {
		for f := range rs.onCreate {
			set[f] = true
		}
	}
	for _, ref := range rs.Refs {
		if set[ref.Field] {
			set[ref.Key] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// resolveRef checks that the object named by val (a name, an id, or an id
// as a string) exists and returns its id as JSON. null passes through for
// optional references.
func (rs *Resource[T]) resolveRef(ctx context.Context, tx *gorm.DB, ref *Ref, key string, val json.RawMessage) (json.RawMessage, error) {
	var v any
	if err := json.Unmarshal(val, &v); err != nil {
		return nil, model.BadRequest("field '%s': %v", key, err)
	}
	var k string
	switch x := v.(type) {
	case nil:
		if rs.fields[ref.Field].typ.Kind() == reflect.Pointer {
			return json.RawMessage("null"), nil
		}
		return nil, model.Invalid(key, "is required")
	case string:
		k = x
	case float64:
		if x != float64(int64(x)) || x <= 0 {
			return nil, model.BadRequest("field '%s' must be a positive integer id or a name", key)
		}
		k = strconv.FormatInt(int64(x), 10)
	default:
		return nil, model.BadRequest("field '%s' must be a %s name or id", key, ref.Kind)
	}
	id, err := store.ResolveID(ctx, tx, ref.Kind, ref.Table, ref.NameCol, k)
	if err != nil {
		return nil, filterError(key, err)
	}
	return json.RawMessage(strconv.FormatInt(id, 10)), nil
}

// checkName refuses a natural key that another object of the type holds.
func (rs *Resource[T]) checkName(ctx context.Context, tx *gorm.DB, obj *T) error {
	if rs.NameCol == "" {
		return nil
	}
	name := reflect.ValueOf(obj).Elem().FieldByNameFunc(func(n string) bool {
		return strings.EqualFold(n, strings.ReplaceAll(rs.NameCol, "_", ""))
	})
	if !name.IsValid() {
		return nil
	}
	var n int64
	q := tx.WithContext(ctx).Model(new(T)).Where(clause.Eq{Column: clause.Column{Name: rs.NameCol}, Value: name.String()})
	if o, ok := any(obj).(model.Object); ok && o.GetID() != 0 {
		q = q.Where("id <> ?", o.GetID())
	}
	if err := q.Count(&n).Error; err != nil {
		return err
	}
	if n > 0 {
		return model.Invalid(rs.NameCol, "'%s' is already taken by another %s", name.String(), rs.Type)
	}
	return nil
}

// jsonEqual compares two JSON texts by value.
func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
