package barclamp

import (
	"context"

	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Enabled lists the barclamps enabled in the deployment with id.
func Enabled(ctx context.Context, db *gorm.DB, deploymentID int64) ([]model.Barclamp, error) {
	var out []model.Barclamp
	err := db.WithContext(ctx).Where("id IN (?)",
		db.Model(&model.DeploymentBarclamp{}).Select("barclamp_id").Where("deployment_id = ?", deploymentID)).
		Order("id").Find(&out).Error
	return out, err
}

// IsEnabled reports whether barclampID is enabled in deploymentID.
func IsEnabled(ctx context.Context, db *gorm.DB, deploymentID, barclampID int64) (bool, error) {
	var n int64
	err := db.WithContext(ctx).Model(&model.DeploymentBarclamp{}).
		Where("deployment_id = ? AND barclamp_id = ?", deploymentID, barclampID).Count(&n).Error
	return n > 0, err
}

// Enable enables the barclamp named (or numbered) key in a deployment;
// enabling twice is not an error.
func Enable(ctx context.Context, db *gorm.DB, deploymentID int64, key string) (*model.Barclamp, error) {
	bc, err := store.Find[model.Barclamp](ctx, db, "barclamp", "name", key)
	if err != nil {
		return nil, err
	}
	err = db.WithContext(ctx).Clauses(clause.OnConflict{DoNothing: true}).
		Create(&model.DeploymentBarclamp{DeploymentID: deploymentID, BarclampID: bc.ID}).Error
	return bc, store.Translate(err)
}

// Disable disables a barclamp in a deployment; refused (409) while roles of
// the barclamp are bound in it.
func Disable(ctx context.Context, db *gorm.DB, deploymentID int64, key string) error {
	return db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		bc, err := store.Find[model.Barclamp](ctx, tx, "barclamp", "name", key)
		if err != nil {
			return err
		}
		var bound int64
		err = tx.Model(&model.NodeRole{}).Joins("JOIN roles ON roles.id = node_roles.role_id").
			Where("roles.barclamp_id = ? AND node_roles.deployment_id = ?", bc.ID, deploymentID).Count(&bound).Error
		if err != nil {
			return err
		}
		if bound > 0 {
			return model.Conflict("barclamp '%s' has %d node-role(s) bound in this deployment; unbind them first", bc.Name, bound)
		}
		res := tx.Where("deployment_id = ? AND barclamp_id = ?", deploymentID, bc.ID).Delete(&model.DeploymentBarclamp{})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return &model.NotFoundError{Kind: "enabled barclamp", Key: bc.Name}
		}
		return nil
	})
}

// Inherit gives a new deployment the barclamps its parent has enabled.
func Inherit(tx *gorm.DB, parentID, childID int64) error {
	return tx.Exec(`INSERT INTO deployment_barclamps (deployment_id, barclamp_id, created_at)
		SELECT ?, barclamp_id, ? FROM deployment_barclamps WHERE deployment_id = ?`, childID, tx.NowFunc(), parentID).Error
}
