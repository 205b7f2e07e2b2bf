package anneal

import (
	"encoding/json"

	"github.com/crowbar-go/crowbar/core/model"
	"gorm.io/gorm"
)

// MergeBatch exposes mergeAll to the external tests: item i is nrs[i] on
// nodes[i] with roles[i].
func MergeBatch(tx *gorm.DB, nrs []*model.NodeRole, nodes []*model.Node, roles []*model.Role) ([]json.RawMessage, error) {
	items := make([]mergeItem, len(nrs))
	for i := range nrs {
		items[i] = mergeItem{nrs[i], nodes[i], roles[i]}
	}
	return mergeAll(tx, items)
}
