package anneal_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/crowbar-go/crowbar/core/anneal"
	"github.com/crowbar-go/crowbar/core/anneal/annealtest"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// Merging a claimed batch at once gives each node-role what merging it
// alone gives: its own parents' data (on its node), its role's
// ancestors' templates and deployment-role data, nothing of the others'.
func TestMergeAllMatchesOneByOne(t *testing.T) {
	st := storetest.Open(t, filepath.Join(t.TempDir(), "crowbar.db"))
	annealtest.SeedChain(t, st.DB, 3, 4, "wasm")
	var nrs []model.NodeRole
	if err := st.DB.Order("id").Find(&nrs).Error; err != nil {
		t.Fatal(err)
	}
	roles := map[int64]*model.Role{}
	nodes := map[int64]*model.Node{}
	for _, nr := range nrs {
		wall := fmt.Sprintf(`{"wall_%d": %d}`, nr.RoleID, nr.NodeID)
		if err := st.DB.Model(&model.NodeRole{}).Where("id = ?", nr.ID).Update("wall", model.JSON(wall)).Error; err != nil {
			t.Fatal(err)
		}
		if roles[nr.RoleID] == nil {
			roles[nr.RoleID] = &model.Role{}
			st.DB.Take(roles[nr.RoleID], nr.RoleID)
			tmpl := fmt.Sprintf(`{"template_%s": true}`, roles[nr.RoleID].Name)
			st.DB.Model(&model.Role{}).Where("id = ?", nr.RoleID).Update("template", model.JSON(tmpl))
			st.DB.Take(roles[nr.RoleID], nr.RoleID)
		}
		if nodes[nr.NodeID] == nil {
			nodes[nr.NodeID] = &model.Node{}
			st.DB.Take(nodes[nr.NodeID], nr.NodeID)
		}
	}
	st.DB.Order("id").Find(&nrs)
	var bn []*model.NodeRole
	var bnodes []*model.Node
	var broles []*model.Role
	for i := range nrs {
		bn, bnodes, broles = append(bn, &nrs[i]), append(bnodes, nodes[nrs[i].NodeID]), append(broles, roles[nrs[i].RoleID])
	}
	batch, err := anneal.MergeBatch(st.DB, bn, bnodes, broles)
	if err != nil {
		t.Fatal(err)
	}
	for i, nr := range bn {
		one, err := anneal.Merged(st.DB, nr, bnodes[i], broles[i])
		if err != nil {
			t.Fatal(err)
		}
		if string(one) != string(batch[i]) {
			t.Fatalf("node-role %d: batch %s, alone %s", nr.ID, batch[i], one)
		}
		var got map[string]any
		json.Unmarshal(one, &got) //nolint:errcheck
		for k, v := range got {
			if n, ok := v.(float64); ok && int64(n) != nr.NodeID {
				t.Fatalf("node-role %d on node %d got another node's %s=%v: %s", nr.ID, nr.NodeID, k, v, one)
			}
		}
	}
	// The last role of a chain sees every ancestor's template, its direct
	// parent's wall and its own.
	var last map[string]any
	json.Unmarshal(batch[3], &last) //nolint:errcheck
	if len(last) != 6 || last["template_chain-0"] != true || last[fmt.Sprintf("wall_%d", bn[2].RoleID)] == nil {
		t.Fatalf("the chain's last node-role merged %v", last)
	}
}
