// Package annealtest seeds node-role graphs for annealer tests and
// benchmarks.
package annealtest

import (
	"context"
	"fmt"
	"testing"

	"github.com/crowbar-go/crowbar/core/anneal"
	"github.com/crowbar-go/crowbar/core/model"
	"gorm.io/gorm"
)

// SeedChain registers a barclamp "chain" with roles chain-0 … chain-<n-1>
// (each requiring the one before, all with jig), enables it in the system
// deployment, creates nodes alive nodes and binds the last role on each
// (which binds the whole chain) and commits them. It returns the number of
// node-roles created.
func SeedChain(t testing.TB, db *gorm.DB, nodes, n int, jig string) int {
	t.Helper()
	bc := model.Barclamp{Name: "chain", Version: "1", Source: "installed", Manifest: model.EmptyObject}
	if err := db.Create(&bc).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Create(&model.DeploymentBarclamp{DeploymentID: model.SystemDeploymentID, BarclampID: bc.ID}).Error; err != nil {
		t.Fatal(err)
	}
	var last model.Role
	for i := 0; i < n; i++ {
		r := model.Role{Name: fmt.Sprintf("chain-%d", i), BarclampID: bc.ID, JigName: jig, Template: model.EmptyObject, Requires: model.StringList{}}
		if i > 0 {
			r.Requires = model.StringList{fmt.Sprintf("chain-%d", i-1)}
		}
		if err := db.Create(&r).Error; err != nil {
			t.Fatal(err)
		}
		last = r
	}
	BindNodes(t, db, nodes, last.Name, "chain")
	return nodes * n
}

// BindNodes creates nodes alive nodes named n<i>.<domain>.test, binds the
// role named role on each (which binds the roles it requires) and commits
// them, a hundred per transaction. It returns how many node-roles exist
// now.
func BindNodes(t testing.TB, db *gorm.DB, nodes int, role, domain string) int64 {
	t.Helper()
	ctx := context.Background()
	var r model.Role
	if err := db.Where("name = ?", role).Take(&r).Error; err != nil {
		t.Fatalf("role %s: %v", role, err)
	}
	const batch = 100
	for start := 0; start < nodes; start += batch {
		err := db.Transaction(func(tx *gorm.DB) error {
			for i := start; i < min(start+batch, nodes); i++ {
				node := model.Node{Name: fmt.Sprintf("c%05d.%s.test", i, domain), Alive: true, DeploymentID: model.SystemDeploymentID,
					Discovery: model.EmptyObject, Hint: model.EmptyObject, Bootenv: "local", Order: 10000}
				if err := tx.Create(&node).Error; err != nil {
					return err
				}
				var ch anneal.Changes
				if _, err := anneal.Bind(ctx, tx, node.ID, r.ID, 0, &ch); err != nil {
					return err
				}
				if err := anneal.CommitNode(tx, &node, &ch); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var n int64
	db.Model(&model.NodeRole{}).Count(&n)
	return n
}
