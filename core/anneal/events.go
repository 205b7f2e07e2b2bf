package anneal

import (
	"sync"
	"time"
)

// Event is one state change of a node-role or a deployment.
type Event struct {
	Type         string    `json:"type"` // node_role or deployment
	ID           int64     `json:"id"`
	NodeID       int64     `json:"node_id,omitempty"`
	Node         string    `json:"node,omitempty"`
	RoleID       int64     `json:"role_id,omitempty"`
	Role         string    `json:"role,omitempty"`
	DeploymentID int64     `json:"deployment_id"`
	Deployment   string    `json:"deployment,omitempty"`
	State        int       `json:"state"`
	StateName    string    `json:"state_name"`
	Runlog       string    `json:"runlog,omitempty"`
	At           time.Time `json:"at"`
}

// Filter selects events; zero fields match everything.
type Filter struct {
	Node, Deployment, Role string
}

func (f Filter) match(e *Event) bool {
	return (f.Node == "" || f.Node == e.Node) && (f.Deployment == "" || f.Deployment == e.Deployment) &&
		(f.Role == "" || f.Role == e.Role)
}

// Bus fans events out to subscribers. A subscriber that does not keep up
// loses events rather than slowing the annealer; it is told how many.
type Bus struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// Subscription receives the events that match its filter.
type Subscription struct {
	C       chan Event
	filter  Filter
	mu      sync.Mutex
	dropped int
}

// Dropped returns how many events were lost since the last call.
func (s *Subscription) Dropped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.dropped
	s.dropped = 0
	return n
}

// NewBus returns a bus without subscribers.
func NewBus() *Bus { return &Bus{subs: map[*Subscription]struct{}{}} }

// Subscribe starts delivering matching events; call Unsubscribe when done.
func (b *Bus) Subscribe(f Filter) *Subscription {
	s := &Subscription{C: make(chan Event, 1024), filter: f}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Unsubscribe stops delivery to s.
func (b *Bus) Unsubscribe(s *Subscription) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
}

// Publish delivers events to every matching subscriber without blocking.
func (b *Bus) Publish(events ...Event) {
	if b == nil || len(events) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		for i := range events {
			if !s.filter.match(&events[i]) {
				continue
			}
			select {
			case s.C <- events[i]:
			default:
				s.mu.Lock()
				s.dropped++
				s.mu.Unlock()
			}
		}
	}
}
