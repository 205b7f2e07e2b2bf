package store

import (
	"github.com/crowbar-go/crowbar/core/model"
	"gorm.io/gorm"
)

// BeforeDelete applies the domain's rules for removing obj inside tx: it
// refuses deletes that would orphan or break other objects and moves what
// must move. It runs in the same transaction as the delete.
func BeforeDelete(tx *gorm.DB, obj any) error {
	switch o := obj.(type) {
	case *model.Deployment:
		return beforeDeleteDeployment(tx, o)
	case *model.Jig:
		var n int64
		if err := tx.Model(&model.Role{}).Where("jig_name = ?", o.Name).Count(&n).Error; err != nil {
			return err
		}
		if n > 0 {
			return model.Conflict("jig '%s' is used by %d role(s) and cannot be deleted", o.Name, n)
		}
	}
	return nil
}

func beforeDeleteDeployment(tx *gorm.DB, d *model.Deployment) error {
	if d.System {
		return model.Conflict("deployment '%s' is the system deployment and cannot be deleted", d.Name)
	}
	var children int64
	if err := tx.Model(&model.Deployment{}).Where("parent_id = ?", d.ID).Count(&children).Error; err != nil {
		return err
	}
	if children > 0 {
		return model.Conflict("deployment '%s' is the parent of %d deployment(s); delete or re-parent them first", d.Name, children)
	}
	var noderoles int64
	if err := tx.Model(&model.NodeRole{}).Where("deployment_id = ?", d.ID).Count(&noderoles).Error; err != nil {
		return err
	}
	if noderoles > 0 {
		return model.Conflict("deployment '%s' still has %d node-role(s); recall or unbind them first", d.Name, noderoles)
	}
	if err := tx.Where("deployment_id = ?", d.ID).Delete(&model.DeploymentRole{}).Error; err != nil {
		return err
	}
	// Its nodes go back to the system deployment, as in OpenCrowbar.
	return tx.Model(&model.Node{}).Where("deployment_id = ?", d.ID).
		Updates(map[string]any{"deployment_id": model.SystemDeploymentID, "updated_at": tx.NowFunc()}).Error
}
