package nodetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/core/agent"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/nodes"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// TestNodeCommandsForBarclamps: nodes.Service.Command, what barclamps'
// node commands go through: who may send what, to which node, and the
// typed errors.
func TestNodeCommandsForBarclamps(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := server(t, st)
		ag := s.StartAgent()
		svc, tr := s.API.Nodes(), s.API.Transport()
		bg := context.Background()
		reader := nodes.Origin{Barclamp: "zero-os", Caller: &auth.Caller{Username: "r", Role: auth.RoleReader}}
		operator := nodes.Origin{Barclamp: "zero-os", Caller: &auth.Caller{Username: "o", Role: auth.RoleOperator}}
		hook := nodes.Origin{Barclamp: "crowbar"}
		zid := strings.ReplaceAll(ag.Config.MAC, ":", "")
		mem := nodes.Call{Node: zid, Command: core0.Command{Command: "info.mem"}}
		reboot := nodes.Call{Node: ag.Node.Name, Command: core0.Command{Command: "core.reboot"}}

		r, err := svc.Command(bg, tr, reader, mem)
		if err != nil || r.Level != core0.LevelJSON || !strings.Contains(r.Data, "total") {
			t.Fatalf("a reader reads info.mem by Zero-OS id: %+v %v", r, err)
		}
		_, err = svc.Command(bg, tr, reader, reboot)
		if ae, ok := auth.AsError(err); !ok || ae.Kind != auth.Forbidden || !strings.Contains(err.Error(), "core.reboot") {
			t.Fatalf("a reader reboots: %v", err)
		}
		if _, err := svc.Command(bg, tr, operator, reboot); err != nil {
			t.Fatalf("an operator reboots: %v", err)
		}
		// A hook may command only nodes of deployments where its barclamp is enabled.
		_, err = svc.Command(bg, tr, hook, mem)
		if ae, ok := auth.AsError(err); !ok || ae.Kind != auth.Forbidden || !strings.Contains(err.Error(), "not enabled") {
			t.Fatalf("a hook of a barclamp not enabled: %v", err)
		}
		var bc model.Barclamp
		bc.Name, bc.Source = "crowbar", "embedded"
		if err := st.DB.Create(&bc).Error; err != nil {
			t.Fatal(err)
		}
		if err := st.DB.Create(&model.DeploymentBarclamp{DeploymentID: ag.Node.DeploymentID, BarclampID: bc.ID}).Error; err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Command(bg, tr, hook, mem); err != nil {
			t.Fatalf("a hook of an enabled barclamp: %v", err)
		}
		// Errors: no such node, no agent, a failed job, a deadline.
		if _, err := svc.Command(bg, tr, operator, nodes.Call{Node: "nope.example.com", Command: core0.Command{Command: "core.ping"}}); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("unknown node: %v", err)
		}
		s.Must(201, "POST", "/api/v2/nodes", `{"name": "bare.example.com"}`)
		var ce *model.ConflictError
		if _, err := svc.Command(bg, tr, operator, nodes.Call{Node: "bare.example.com", Command: core0.Command{Command: "core.ping"}}); !errors.As(err, &ce) {
			t.Fatalf("node without an agent: %v", err)
		}
		args, _ := json.Marshal(core0.SystemArgs{Name: "false"})
		r, err = svc.Command(bg, tr, operator, nodes.Call{Node: ag.Node.Name, Command: core0.Command{Command: "core.system", Arguments: args}})
		if !errors.Is(err, core0.ErrJobFailed) || r == nil || r.Code != 1001 {
			t.Fatalf("a failing job: %+v %v", r, err)
		}
		args, _ = json.Marshal(core0.SystemArgs{Name: "sleep", Args: []string{"5"}})
		_, err = svc.Command(bg, tr, operator, nodes.Call{Node: ag.Node.Name, Command: core0.Command{Command: "core.system", Arguments: args}, Wait: time.Second})
		if !errors.Is(err, core0.ErrTimeout) || !strings.Contains(err.Error(), ag.Node.Name) {
			t.Fatalf("past the deadline: %v", err)
		}
		if st.Dialect != store.SQLite {
			return // containers once is enough
		}
		// Inside a container: a reader may list processes, not start one.
		var id int
		cargs, _ := json.Marshal(agent.CreateArgs{Root: busyboxRoot(t)})
		r, err = svc.Command(bg, tr, operator, nodes.Call{Node: ag.Node.Name, Command: core0.Command{Command: "corex.create", Arguments: cargs}})
		if err != nil {
			t.Fatal(err)
		}
		json.Unmarshal([]byte(r.Data), &id)                                                                                   //nolint:errcheck
		defer svc.Command(bg, tr, operator, nodes.Call{Node: ag.Node.Name, Command: core0.Command{Command: "corex.terminate", //nolint:errcheck
			Arguments: json.RawMessage(fmt.Sprintf(`{"container": %d}`, id))}})
		r, err = svc.Command(bg, tr, reader, nodes.Call{Node: ag.Node.Name, Container: id, Command: core0.Command{Command: "process.list"}})
		if err != nil || r.Container != id || !strings.Contains(r.Data, `"pid":1`) {
			t.Fatalf("process.list in a container: %+v %v", r, err)
		}
		_, err = svc.Command(bg, tr, reader, nodes.Call{Node: ag.Node.Name, Container: id, Command: core0.Command{Command: "bash",
			Arguments: json.RawMessage(`{"script": "true"}`)}})
		if ae, ok := auth.AsError(err); !ok || ae.Kind != auth.Forbidden || !strings.Contains(err.Error(), "in a container") {
			t.Fatalf("a reader runs bash in a container: %v", err)
		}
		r, err = svc.Command(bg, tr, operator, nodes.Call{Node: ag.Node.Name, Container: id, Command: core0.Command{Command: "bash",
			Arguments: json.RawMessage(`{"script": "hostname"}`)}})
		if err != nil || r.Stdout() != fmt.Sprintf("core-%d\n", id) {
			t.Fatalf("bash in a container: %+v %v", r, err)
		}
	})
}
