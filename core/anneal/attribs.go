package anneal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/crowbar-go/crowbar/core/model"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"gorm.io/gorm"
)

// Schemas compiles attrib schemas once per distinct text.
var schemas sync.Map // schema text → *jsonschema.Schema or error

// legacyTypes maps the kwalify-style type names OpenCrowbar's attribs used
// ("type": "str", as in the seed) to JSON Schema's.
var legacyTypes = map[string]string{"str": "string", "int": "integer", "bool": "boolean", "seq": "array",
	"map": "object", "float": "number", "text": "string", "any": ""}

// normalizeSchema makes an OpenCrowbar-era schema valid JSON Schema:
// legacy type names are translated and a boolean "required" (meaning "a
// value must be given") becomes "not null".
func normalizeSchema(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[k] = normalizeSchema(val)
		}
		if t, ok := x["type"].(string); ok {
			if js, legacy := legacyTypes[t]; legacy {
				if js == "" {
					delete(out, "type")
				} else {
					out["type"] = js
				}
			}
		}
		if req, ok := x["required"].(bool); ok {
			delete(out, "required")
			if req {
				out["not"] = map[string]any{"type": "null"}
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = normalizeSchema(x[i])
		}
		return out
	}
	return v
}

func compileSchema(text []byte) (*jsonschema.Schema, error) {
	key := string(text)
	if v, ok := schemas.Load(key); ok {
		if err, isErr := v.(error); isErr {
			return nil, err
		}
		return v.(*jsonschema.Schema), nil
	}
	sch, err := func() (*jsonschema.Schema, error) {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(text))
		if err != nil {
			return nil, err
		}
		c := jsonschema.NewCompiler()
		if err := c.AddResource("attrib.json", normalizeSchema(doc)); err != nil {
			return nil, err
		}
		return c.Compile("attrib.json")
	}()
	if err != nil {
		err = fmt.Errorf("the attrib's schema is not valid: %v", err)
		schemas.Store(key, err)
		return nil, err
	}
	schemas.Store(key, sch)
	return sch, nil
}

// ValidateValue checks value (JSON) against the attrib's schema.
func ValidateValue(a *model.Attrib, value json.RawMessage) error {
	if len(a.Schema) == 0 || string(a.Schema) == "{}" {
		return nil
	}
	sch, err := compileSchema(a.Schema)
	if err != nil {
		return model.Invalid("value", "%v", err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(value))
	if err != nil {
		return model.BadRequest("value is not JSON: %v", err)
	}
	if err := sch.Validate(v); err != nil {
		var ve *jsonschema.ValidationError
		msg := err.Error()
		if errors.As(err, &ve) {
			msg = strings.TrimSpace(strings.ReplaceAll(ve.Error(), "jsonschema validation failed with 'attrib.json#'\n", ""))
		}
		return model.Invalid("value", "does not match the schema of attrib '%s': %s", a.Name, msg)
	}
	return nil
}

// splitMap turns "crowbar/target_os" into its path segments.
func splitMap(m string) []string {
	var out []string
	for _, p := range strings.Split(m, "/") {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// dig returns the value at path in data.
func dig(data map[string]any, path []string) (any, bool) {
	var cur any = data
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[p]; !ok {
			return nil, false
		}
	}
	return cur, len(path) > 0
}

// put sets value at path in data, creating objects on the way.
func put(data map[string]any, path []string, value any) {
	for i, p := range path {
		if i == len(path)-1 {
			data[p] = value
			return
		}
		next, ok := data[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			data[p] = next
		}
		data = next
	}
}

// merge deep-merges src into dst: objects merge, anything else replaces.
func merge(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				merge(dm, sm)
				continue
			}
			cp := map[string]any{}
			merge(cp, sm)
			dst[k] = cp
			continue
		}
		dst[k] = v
	}
}

// NodeAttrib resolves attrib a for node, most specific first: the user data
// of the node's node-role of the attrib's role, then the wall data its jig
// answered (an allocated address, say), the node's hint, the
// deployment-role data, the role's template, the attrib's default.
func NodeAttrib(tx *gorm.DB, a *model.Attrib, node *model.Node) (json.RawMessage, error) {
	path := splitMap(a.Map)
	if len(path) == 0 {
		path = []string{a.Name}
	}
	var sources []model.JSON
	if a.RoleID != nil {
		var nr model.NodeRole
		err := tx.Where("node_id = ? AND role_id = ?", node.ID, *a.RoleID).Take(&nr).Error
		if err == nil {
			sources = append(sources, nr.ProposedData, nr.Wall)
		} else if !errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, err
		}
	}
	sources = append(sources, node.Hint)
	if a.RoleID != nil {
		var dr model.DeploymentRole
		err := tx.Where("deployment_id = ? AND role_id = ?", node.DeploymentID, *a.RoleID).Take(&dr).Error
		if err == nil {
			sources = append(sources, dr.ProposedData)
		} else if !errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, err
		}
		var role model.Role
		if err := tx.Select("template").Take(&role, *a.RoleID).Error; err == nil {
			sources = append(sources, role.Template)
		}
	}
	for _, src := range sources {
		data, err := decodeObject(src)
		if err != nil {
			continue
		}
		if v, ok := dig(data, path); ok {
			return json.Marshal(v)
		}
	}
	if len(a.Default) == 0 {
		return json.RawMessage("null"), nil
	}
	return json.RawMessage(a.Default), nil
}

// SetNodeAttrib validates value against the attrib's schema and stores it
// for node: in the user data of the node's node-role of the attrib's role
// when there is one (it takes effect when the node is committed), else in
// the node's hint.
func SetNodeAttrib(tx *gorm.DB, a *model.Attrib, node *model.Node, value json.RawMessage) error {
	if !a.Writable {
		return model.Invalid("attrib", "'%s' is not writable", a.Name)
	}
	if err := ValidateValue(a, value); err != nil {
		return err
	}
	var v any
	if err := json.Unmarshal(value, &v); err != nil {
		return model.BadRequest("value is not JSON: %v", err)
	}
	path := splitMap(a.Map)
	if len(path) == 0 {
		path = []string{a.Name}
	}
	if a.RoleID != nil {
		var nr model.NodeRole
		err := tx.Where("node_id = ? AND role_id = ?", node.ID, *a.RoleID).Take(&nr).Error
		if err == nil {
			data, err := decodeObject(nr.ProposedData)
			if err != nil {
				return err
			}
			put(data, path, v)
			b, _ := json.Marshal(data)
			return tx.Model(&nr).Updates(map[string]any{"proposed_data": model.JSON(b), "updated_at": tx.NowFunc()}).Error
		}
		if !errors.Is(err, gorm.ErrRecordNotFound) {
			return err
		}
	}
	hint, err := decodeObject(node.Hint)
	if err != nil {
		return err
	}
	put(hint, path, v)
	b, _ := json.Marshal(hint)
	node.Hint = model.JSON(b)
	return tx.Model(node).Updates(map[string]any{"hint": node.Hint, "updated_at": tx.NowFunc()}).Error
}
