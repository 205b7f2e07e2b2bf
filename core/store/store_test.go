package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

func TestMigrationsAreIdempotentAndSeedTheSystemDeployment(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Databases(t) {
		t.Run(string(d.Dialect), func(t *testing.T) {
			ctx := context.Background()
			first := storetest.Open(t, d.DSN)
			first.Close()
			s := storetest.Open(t, d.DSN) // second start: nothing to apply
			var versions []int
			if err := s.DB.Raw("SELECT version FROM schema_migrations ORDER BY version").Scan(&versions).Error; err != nil {
				t.Fatal(err)
			}
			if len(versions) != store.SchemaVersion() {
				t.Fatalf("schema_migrations = %v, want one row per version up to %d", versions, store.SchemaVersion())
			}
			dep, err := store.Find[model.Deployment](ctx, s.DB, "deployment", "name", "system")
			if err != nil {
				t.Fatal(err)
			}
			if dep.ID != model.SystemDeploymentID || !dep.System {
				t.Fatalf("system deployment = %+v", dep)
			}
			var count int64
			s.DB.Model(&model.Deployment{}).Count(&count)
			if count != 1 {
				t.Fatalf("%d deployments after two starts, want 1", count)
			}
		})
	}
}

// The claim-order index (migration 11) exists on SQLite only; on
// PostgreSQL the migration is recorded and creates nothing.
func TestSQLiteOnlyMigration(t *testing.T) {
	for _, d := range storetest.Databases(t) {
		t.Run(string(d.Dialect), func(t *testing.T) {
			s := storetest.Open(t, d.DSN)
			q := "SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'node_roles_todo' AND schemaname = current_schema()"
			if d.Dialect == store.SQLite {
				q = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'node_roles_todo'"
			}
			var n int
			if err := s.DB.Raw(q).Scan(&n).Error; err != nil {
				t.Fatal(err)
			}
			if want := map[store.Dialect]int{store.SQLite: 1, store.Postgres: 0}[d.Dialect]; n != want {
				t.Fatalf("%d node_roles_todo indexes, want %d", n, want)
			}
			var applied int
			s.DB.Raw("SELECT COUNT(*) FROM schema_migrations WHERE version = 11").Scan(&applied)
			if applied != 1 {
				t.Fatal("migration 11 not recorded")
			}
		})
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Databases(t) {
		t.Run(string(d.Dialect), func(t *testing.T) {
			s := storetest.Open(t, d.DSN)
			if err := s.DB.Exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from the future', CURRENT_TIMESTAMP)",
				store.SchemaVersion()+1).Error; err != nil {
				t.Fatal(err)
			}
			s.Close()
			_, err := store.Open(context.Background(), d.DSN, store.Options{})
			if err == nil || !strings.Contains(err.Error(), "knows versions up to") {
				t.Fatalf("Open on a newer schema: err = %v, want a refusal naming the versions", err)
			}
		})
	}
}

func TestFindByNameOrID(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		n := &model.Node{Name: "a.example.com", DeploymentID: 1}
		if err := s.DB.Create(n).Error; err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"a.example.com", "1"} {
			got, err := store.Find[model.Node](ctx, s.DB, "node", "name", key)
			if err != nil || got.ID != n.ID {
				t.Fatalf("Find(%q) = %+v, %v", key, got, err)
			}
		}
		_, err := store.Find[model.Node](ctx, s.DB, "node", "name", "missing.example.com")
		if !errors.Is(err, model.ErrNotFound) || err.Error() != "node 'missing.example.com' not found" {
			t.Fatalf("Find(missing) err = %v", err)
		}
		if _, err := store.ResolveID(ctx, s.DB, "node", "nodes", "name", "99"); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("ResolveID(99) err = %v", err)
		}
	})
}

func TestTranslateConstraintViolations(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		if err := s.DB.Create(&model.Node{Name: "a.example.com", DeploymentID: 1}).Error; err != nil {
			t.Fatal(err)
		}
		err := store.Translate(s.DB.Create(&model.Node{Name: "a.example.com", DeploymentID: 1}).Error)
		var ve *model.ValidationError
		if !errors.As(err, &ve) || ve.Field != "name" {
			t.Fatalf("duplicate name: err = %#v, want a ValidationError on name", err)
		}
		err = store.Translate(s.DB.Create(&model.Node{Name: "b.example.com", DeploymentID: 42}).Error)
		var ce *model.ConflictError
		if !errors.As(err, &ce) {
			t.Fatalf("missing deployment: err = %#v, want a ConflictError", err)
		}
	})
}

// Every model must round-trip through its table: a column that gorm names
// differently from the migration fails here, on both databases.
func TestEveryModelRoundTrips(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		status := "ok"
		bc := &model.Barclamp{Name: "crowbar", Version: "1.0"}
		role := &model.Role{Name: "r", Requires: model.StringList{"a", "b"}, Template: model.JSON(`{"x":1}`), Script: "echo hi"}
		node := &model.Node{Name: "a.example.com", DeploymentID: 1, Hint: model.JSON(`{"admin_macs":["52:54:05:3f:00:00"]}`)}
		group := &model.Group{Name: "g", Category: "tag"}
		objs := []any{bc, &model.Jig{Name: "ansible"}, role, node, group, &model.User{Username: "u", APIAccess: true, Role: "admin"}}
		for _, o := range objs {
			if o == role {
				role.BarclampID = bc.ID
			}
			if err := s.DB.Create(o).Error; err != nil {
				t.Fatalf("create %T: %v", o, err)
			}
		}
		more := []any{
			&model.DeploymentRole{DeploymentID: 1, RoleID: role.ID},
			&model.NodeRole{NodeID: node.ID, RoleID: role.ID, DeploymentID: 1, Status: &status, SysData: model.JSON(`{"s":1}`)},
			&model.Attrib{Name: "at", BarclampID: bc.ID, RoleID: &role.ID, Default: model.Value(`"x"`)},
			&model.GroupNode{GroupID: group.ID, NodeID: node.ID},
		}
		for _, o := range more {
			if err := s.DB.Create(o).Error; err != nil {
				t.Fatalf("create %T: %v", o, err)
			}
		}
		var gotRole model.Role
		var gotNR model.NodeRole
		var gotAttrib model.Attrib
		var gotNode model.Node
		s.DB.First(&gotRole, role.ID)
		s.DB.First(&gotNR)
		s.DB.First(&gotAttrib)
		s.DB.First(&gotNode, node.ID)
		if len(gotRole.Requires) != 2 || string(gotRole.Template) != `{"x":1}` || gotRole.Script != "echo hi" ||
			string(gotNR.SysData) != `{"s":1}` || gotNR.Status == nil || *gotNR.Status != "ok" ||
			string(gotAttrib.Default) != `"x"` || string(gotNode.Hint) != `{"admin_macs":["52:54:05:3f:00:00"]}` ||
			gotNode.CreatedAt.IsZero() {
			t.Fatalf("round trip lost data: role %+v node-role %+v attrib %+v node %+v", gotRole, gotNR, gotAttrib, gotNode)
		}
	})
}
