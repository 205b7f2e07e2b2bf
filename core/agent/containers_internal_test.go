package agent

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestSaveAfterRemoveDir: a container's record saved after its directory
// was removed (the halt watcher racing destroy) does not bring the
// directory back; before removal it is written. Run under -race, the
// concurrent rounds check the two are serialized.
func TestSaveAfterRemoveDir(t *testing.T) {
	cs := &containers{}
	for i := 0; i < 50; i++ {
		c := &container{ID: i, Dir: filepath.Join(t.TempDir(), "c"), mu: &cs.mu, Status: "halted"}
		if err := cs.save(c); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(c.Dir, "container.json")); err != nil {
			t.Fatalf("record not written: %v", err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); cs.save(c) }() //nolint:errcheck
		go func() {
			defer wg.Done()
			if err := c.removeDir(); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		if err := cs.save(c); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
			t.Fatalf("round %d: the directory is back after removal: %v", i, err)
		}
	}
}
