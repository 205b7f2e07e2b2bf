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
	case *model.User:
		if o.Role == "admin" {
			return LastAdminGuard(tx, o.ID)
		}
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

// LastAdminGuard refuses a change that would leave no admin: deleting or
// demoting the admin with id when no other admin exists.
func LastAdminGuard(tx *gorm.DB, id int64) error {
	var others int64
	if err := tx.Model(&model.User{}).Where("role = ? AND id <> ?", "admin", id).Count(&others).Error; err != nil {
		return err
	}
	if others == 0 {
		return model.Conflict("this is the last admin user; make another user admin first")
	}
	return nil
}
