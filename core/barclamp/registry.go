package barclamp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/hashicorp/go-hclog"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Module is a compiled barclamp ready for calls. The plugins package
// implements it.
type Module interface {
	Manifest() *Manifest
	HTTP(ctx context.Context, req *HTTPRequest) (*HTTPResponse, error)
	Hook(ctx context.Context, ev *HookEvent) (*HookResult, error)
	Close(ctx context.Context) error
}

// Host compiles modules. Compile validates the module (its ABI version and
// manifest export) and reads its manifest; nothing is stored.
type Host interface {
	Compile(ctx context.Context, name string, wasm []byte) (Module, error)
	// Load compiles a module whose manifest was read and validated before;
	// it need not start an instance.
	Load(ctx context.Context, name string, wasm []byte, manifest *Manifest) (Module, error)
}

// Sources of a barclamp.
const (
	SourceEmbedded  = "embedded"  // first-party, built into the server
	SourceInstalled = "installed" // installed at run time through the API
)

// Active is a loaded barclamp.
type Active struct {
	Module Module
	Digest string
}

// Registry stores barclamp modules, registers what they declare and keeps
// the loaded ones ready for calls.
type Registry struct {
	db   *gorm.DB
	host Host
	log  hclog.Logger

	mu           sync.RWMutex
	active       map[string]*Active
	failed       map[string]string // name → why it did not load
	failedDigest map[string]string // name → the digest that failed
	pending      map[string]bool   // embedded barclamps still loading
}

// NewRegistry returns an empty registry.
func NewRegistry(db *gorm.DB, host Host, log hclog.Logger) *Registry {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Registry{db: db, host: host, log: log.Named("barclamps"),
		active: map[string]*Active{}, failed: map[string]string{}, failedDigest: map[string]string{}, pending: map[string]bool{}}
}

// Digest is the hex sha256 of a module.
func Digest(wasm []byte) string {
	sum := sha256.Sum256(wasm)
	return hex.EncodeToString(sum[:])
}

// Get returns the loaded barclamp called name.
func (r *Registry) Get(name string) (*Active, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	a, ok := r.active[name]
	return a, ok
}

// Names lists the loaded barclamps, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.active))
	for n := range r.active {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Status says whether name is loaded in this server, or why not.
func (r *Registry) Status(name string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if _, ok := r.active[name]; ok {
		return "loaded"
	}
	if r.pending[name] {
		return "loading"
	}
	if why, ok := r.failed[name]; ok {
		return "error: " + why
	}
	return "not loaded"
}

func (r *Registry) activate(name, digest string, m Module) {
	r.mu.Lock()
	old := r.active[name]
	r.active[name] = &Active{Module: m, Digest: digest}
	delete(r.failed, name)
	delete(r.failedDigest, name)
	r.mu.Unlock()
	if old != nil && old.Module != m {
		old.Module.Close(context.Background()) //nolint:errcheck // in-flight calls finish first
	}
}

// Install compiles and validates wasm, stores it with its digest and
// registers its barclamp, roles, attribs and routes, then starts serving it
// (replacing an older version). Nothing is stored when any step fails.
func (r *Registry) Install(ctx context.Context, wasm []byte, source string) (*model.Barclamp, error) {
	if len(wasm) == 0 {
		return nil, model.Invalid("module", "is empty")
	}
	digest := Digest(wasm)
	mod, err := r.host.Compile(ctx, "", wasm)
	if err != nil {
		return nil, model.Invalid("module", "%v", err)
	}
	m := mod.Manifest()
	if err := m.Validate(); err != nil {
		mod.Close(ctx) //nolint:errcheck
		return nil, err
	}
	var bc model.Barclamp
	err = r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var err error
		bc, err = register(tx, m, digest, wasm, source)
		return err
	})
	if err != nil {
		mod.Close(ctx) //nolint:errcheck
		return nil, store.Translate(err)
	}
	r.activate(m.Name, digest, mod)
	r.log.Info("barclamp loaded", "name", m.Name, "version", m.Version, "digest", digest[:12], "source", source,
		"roles", len(m.Roles), "routes", len(m.Routes))
	bc.Status = "loaded"
	return &bc, nil
}

// register upserts the barclamp and what its manifest declares, in tx.
func register(tx *gorm.DB, m *Manifest, digest string, wasm []byte, source string) (model.Barclamp, error) {
	var bc model.Barclamp
	err := tx.Where("name = ?", m.Name).Take(&bc).Error
	if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		return bc, err
	}
	if bc.ID != 0 && bc.Source == SourceEmbedded && source == SourceInstalled {
		return bc, model.Conflict("barclamp '%s' is first-party (built into the server) and cannot be replaced at run time", m.Name)
	}
	manifest, _ := json.Marshal(m)
	bc.Name, bc.Description, bc.Version, bc.Digest, bc.ABI, bc.Source, bc.Manifest =
		m.Name, m.Description, m.Version, digest, m.ABI, source, model.JSON(manifest)
	if err := tx.Save(&bc).Error; err != nil {
		return bc, err
	}
	if err := tx.Exec("DELETE FROM barclamp_modules WHERE barclamp_id = ?", bc.ID).Error; err != nil {
		return bc, err
	}
	if err := tx.Exec("INSERT INTO barclamp_modules (barclamp_id, module) VALUES (?, ?)", bc.ID, wasm).Error; err != nil {
		return bc, err
	}
	if err := registerRoles(tx, &bc, m); err != nil {
		return bc, err
	}
	if source == SourceEmbedded {
		err := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&model.DeploymentBarclamp{
			DeploymentID: model.SystemDeploymentID, BarclampID: bc.ID}).Error
		if err != nil {
			return bc, err
		}
	}
	return bc, nil
}

// claimed refuses names of table that another barclamp already owns.
func claimed(tx *gorm.DB, bc *model.Barclamp, table, kind string, names []string) error {
	if len(names) == 0 {
		return nil
	}
	var rows []struct {
		Name     string
		Barclamp string
	}
	err := tx.Table(table+" t").Select("t.name AS name, b.name AS barclamp").
		Joins("JOIN barclamps b ON b.id = t.barclamp_id").
		Where("t.name IN ? AND t.barclamp_id <> ?", names, bc.ID).Scan(&rows).Error
	if err != nil {
		return err
	}
	if len(rows) > 0 {
		return model.Conflict("%s '%s' is claimed by barclamps '%s' and '%s'", kind, rows[0].Name, rows[0].Barclamp, bc.Name)
	}
	return nil
}

func registerRoles(tx *gorm.DB, bc *model.Barclamp, m *Manifest) error {
	var roleNames, attribNames []string
	for _, rs := range m.Roles {
		roleNames = append(roleNames, rs.Name)
		for _, a := range rs.Attribs {
			attribNames = append(attribNames, a.Name)
		}
	}
	for _, a := range m.Attribs {
		attribNames = append(attribNames, a.Name)
	}
	if err := claimed(tx, bc, "roles", "role", roleNames); err != nil {
		return err
	}
	if err := claimed(tx, bc, "attribs", "attrib", attribNames); err != nil {
		return err
	}
	// Roles the new version drops: never silently while they are bound.
	var existing []model.Role
	if err := tx.Where("barclamp_id = ?", bc.ID).Find(&existing).Error; err != nil {
		return err
	}
	keep := toSet(roleNames)
	for _, old := range existing {
		if keep[old.Name] {
			continue
		}
		var bound int64
		if err := tx.Model(&model.NodeRole{}).Where("role_id = ?", old.ID).Count(&bound).Error; err != nil {
			return err
		}
		if bound > 0 {
			return model.Conflict("barclamp '%s' version %s drops role '%s', which is still bound to %d node(s); unbind it first",
				bc.Name, m.Version, old.Name, bound)
		}
		if err := deleteRole(tx, old.ID); err != nil {
			return err
		}
	}
	if err := tx.Where("barclamp_id = ? AND name NOT IN ?", bc.ID, append(attribNames, "")).Delete(&model.Attrib{}).Error; err != nil {
		return err
	}
	for _, rs := range m.Roles {
		var role model.Role
		if err := tx.Where("name = ?", rs.Name).Take(&role).Error; err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
			return err
		}
		jig := rs.Jig
		if jig == "" {
			switch {
			case rs.Script != "":
				jig = "script"
			case slices.Contains(rs.Hooks, "on_todo"):
				jig = "wasm"
			default:
				jig = "noop"
			}
		}
		role.Script = rs.Script
		role.Name, role.Description, role.BarclampID, role.JigName, role.Requires, role.Cohort =
			rs.Name, rs.Description, bc.ID, jig, model.StringList(rs.Requires), rs.Cohort
		role.Template = model.EmptyObject
		if len(rs.Template) > 0 {
			role.Template = model.JSON(rs.Template)
		}
		role.Library, role.Implicit, role.Bootstrap, role.Discovery = rs.HasFlag("library"), rs.HasFlag("implicit"), rs.HasFlag("bootstrap"), rs.HasFlag("discovery")
		role.Server, role.Cluster, role.Destructive, role.Abstract = rs.HasFlag("server"), rs.HasFlag("cluster"), rs.HasFlag("destructive"), rs.HasFlag("abstract")
		role.Milestone, role.Powersave, role.Service = rs.HasFlag("milestone"), rs.HasFlag("powersave"), rs.HasFlag("service")
		if err := tx.Save(&role).Error; err != nil {
			return err
		}
		for _, a := range rs.Attribs {
			if err := upsertAttrib(tx, bc.ID, &role.ID, a); err != nil {
				return err
			}
		}
	}
	for _, a := range m.Attribs {
		if err := upsertAttrib(tx, bc.ID, nil, a); err != nil {
			return err
		}
	}
	return nil
}

func upsertAttrib(tx *gorm.DB, barclampID int64, roleID *int64, a AttribSpec) error {
	var at model.Attrib
	if err := tx.Where("name = ?", a.Name).Take(&at).Error; err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		return err
	}
	at.Name, at.Description, at.BarclampID, at.RoleID, at.Map, at.Writable = a.Name, a.Description, barclampID, roleID, a.Map, a.Writable
	at.Order = a.Order
	if at.Order == 0 {
		at.Order = 10000
	}
	at.Schema = model.EmptyObject
	if len(a.Schema) > 0 {
		at.Schema = model.JSON(a.Schema)
	}
	at.Default = model.Value(a.Default)
	return tx.Save(&at).Error
}

func deleteRole(tx *gorm.DB, roleID int64) error {
	for _, q := range []string{
		"DELETE FROM attribs WHERE role_id = ?",
		"DELETE FROM deployment_roles WHERE role_id = ?",
		"UPDATE nodes SET target_role_id = NULL WHERE target_role_id = ?",
		"DELETE FROM roles WHERE id = ?",
	} {
		if err := tx.Exec(q, roleID).Error; err != nil {
			return err
		}
	}
	return nil
}

func toSet(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// Remove unloads an installed barclamp and deletes it with its roles and
// attribs; refused (409) while any of its roles is bound, and for
// first-party barclamps.
func (r *Registry) Remove(ctx context.Context, key string) error {
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		bc, err := store.Find[model.Barclamp](ctx, tx, "barclamp", "name", key)
		if err != nil {
			return err
		}
		if bc.Source == SourceEmbedded {
			return model.Conflict("barclamp '%s' is first-party; disable it per deployment instead", bc.Name)
		}
		var bound int64
		err = tx.Model(&model.NodeRole{}).Joins("JOIN roles ON roles.id = node_roles.role_id").
			Where("roles.barclamp_id = ?", bc.ID).Count(&bound).Error
		if err != nil {
			return err
		}
		if bound > 0 {
			return model.Conflict("barclamp '%s' has roles bound to %d node-role(s); unbind them first", bc.Name, bound)
		}
		var roleIDs []int64
		if err := tx.Model(&model.Role{}).Where("barclamp_id = ?", bc.ID).Pluck("id", &roleIDs).Error; err != nil {
			return err
		}
		for _, id := range roleIDs {
			if err := deleteRole(tx, id); err != nil {
				return err
			}
		}
		if err := tx.Where("barclamp_id = ?", bc.ID).Delete(&model.Attrib{}).Error; err != nil {
			return err
		}
		key = bc.Name
		return tx.Delete(bc).Error
	})
	if err != nil {
		return err
	}
	r.mu.Lock()
	a := r.active[key]
	delete(r.active, key)
	delete(r.failed, key)
	delete(r.failedDigest, key)
	r.mu.Unlock()
	if a != nil {
		a.Module.Close(ctx) //nolint:errcheck
	}
	r.log.Info("barclamp removed", "name", key)
	return nil
}

// LoadAll installs the embedded first-party modules (only loading them
// where the stored digest matches: nothing to register) and loads every
// other stored module. A module that fails to load is reported by Status
// and does not stop the others.
func (r *Registry) LoadAll(ctx context.Context, embedded map[string][]byte) error {
	names := make([]string, 0, len(embedded))
	for n := range embedded {
		names = append(names, n)
	}
	sort.Strings(names)
	r.Expect(names...)
	// Compiling is the slow part of a first start: one module per core.
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func(n string) {
			defer func() { <-sem; wg.Done() }()
			defer r.loaded(n)
			wasm := embedded[n]
			var bc model.Barclamp
			err := r.db.WithContext(ctx).Where("name = ? AND source = ? AND digest = ?", n, SourceEmbedded, Digest(wasm)).Take(&bc).Error
			if err == nil {
				err = r.load(ctx, &bc, wasm)
			} else {
				_, err = r.Install(ctx, wasm, SourceEmbedded)
			}
			if err != nil {
				r.fail(n, Digest(wasm), err)
			}
		}(n)
	}
	wg.Wait()
	return r.Sync(ctx)
}

// Expect marks barclamps as loading: until LoadAll has loaded (or failed)
// each, its routes answer 503 and the server is not ready. A server calls
// it before it listens, then runs LoadAll in the background.
func (r *Registry) Expect(names ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		r.pending[n] = true
	}
}

func (r *Registry) loaded(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pending, name)
}

// Pending lists the barclamps still loading, sorted.
func (r *Registry) Pending() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.pending))
	for n := range r.pending {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// IsPending reports whether barclamp name is still loading.
func (r *Registry) IsPending(name string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.pending[name]
}

// Sync brings this server's loaded barclamps in line with the database:
// modules installed or replaced through another replica are loaded, removed
// ones unloaded. A module that failed to load is retried only when its
// digest changes.
func (r *Registry) Sync(ctx context.Context) error {
	var stored []model.Barclamp
	if err := r.db.WithContext(ctx).Select("id", "name", "digest", "source").Order("id").Find(&stored).Error; err != nil {
		return fmt.Errorf("list stored barclamps: %w", err)
	}
	seen := map[string]bool{}
	for _, bc := range stored {
		seen[bc.Name] = true
		r.mu.RLock()
		a, loaded := r.active[bc.Name]
		failedDigest, failed := r.failedDigest[bc.Name]
		r.mu.RUnlock()
		if (loaded && a.Digest == bc.Digest) || (failed && failedDigest == bc.Digest) {
			continue
		}
		if err := r.loadStored(ctx, bc.ID); err != nil {
			r.fail(bc.Name, bc.Digest, err)
		}
	}
	r.mu.Lock()
	var gone []*Active
	for name, a := range r.active {
		if !seen[name] {
			gone = append(gone, a)
			delete(r.active, name)
			r.log.Info("barclamp unloaded: removed from the database", "name", name)
		}
	}
	r.mu.Unlock()
	for _, a := range gone {
		a.Module.Close(ctx) //nolint:errcheck
	}
	return nil
}

// Watch calls Sync every interval until ctx ends, so an install through one
// replica reaches the others.
func (r *Registry) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.Sync(context.WithoutCancel(ctx)); err != nil && ctx.Err() == nil {
				r.log.Warn("barclamp sync failed", "error", err)
			}
		}
	}
}

func (r *Registry) fail(name, digest string, err error) {
	r.log.Error("barclamp failed to load", "name", name, "error", err)
	r.mu.Lock()
	r.failed[name] = err.Error()
	r.failedDigest[name] = digest
	r.mu.Unlock()
}

// loadStored reads a stored barclamp and its module and serves it.
func (r *Registry) loadStored(ctx context.Context, id int64) error {
	var bc model.Barclamp
	if err := r.db.WithContext(ctx).Take(&bc, id).Error; err != nil {
		return fmt.Errorf("read barclamp: %w", err)
	}
	var wasm []byte
	if err := r.db.WithContext(ctx).Raw("SELECT module FROM barclamp_modules WHERE barclamp_id = ?", bc.ID).Row().Scan(&wasm); err != nil {
		return fmt.Errorf("read module: %w", err)
	}
	if d := Digest(wasm); d != bc.Digest {
		return fmt.Errorf("stored module digest %s does not match the recorded %s", d[:12], bc.Digest)
	}
	return r.load(ctx, &bc, wasm)
}

// load compiles wasm with bc's stored manifest and serves it; its
// registrations are already in the database.
func (r *Registry) load(ctx context.Context, bc *model.Barclamp, wasm []byte) error {
	var m Manifest
	if err := json.Unmarshal(bc.Manifest, &m); err != nil {
		return fmt.Errorf("stored manifest: %w", err)
	}
	if err := m.Validate(); err != nil {
		return err
	}
	mod, err := r.host.Load(ctx, bc.Name, wasm, &m)
	if err != nil {
		return err
	}
	r.activate(bc.Name, bc.Digest, mod)
	r.log.Info("barclamp loaded", "name", bc.Name, "version", bc.Version, "digest", bc.Digest[:12], "source", bc.Source)
	return nil
}

// Close unloads every barclamp.
func (r *Registry) Close(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, a := range r.active {
		a.Module.Close(ctx) //nolint:errcheck
		delete(r.active, name)
	}
}
