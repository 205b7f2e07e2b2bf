package anneal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"
)

// Event is one state change of a node-role or a deployment.
type Event struct {
	// Seq is the event's place in the database's event log: it grows in
	// commit order for any one object, and a client that reconnects asks
	// for what followed the last Seq it saw (SSE's Last-Event-ID).
	Seq          int64     `json:"seq,omitempty"`
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

// notifyChannel is the PostgreSQL channel a committed event log write
// wakes the other replicas' feeds on.
const notifyChannel = "crowbar_events"

// Bus carries the event log to subscribers. Changes write their events into
// the database's event log (table events) in the transaction that makes
// them, so every replica sharing a database sees every replica's changes:
// while anyone subscribes, a feed reads the log in order and fans it out.
// It is woken by this process's commits (Kick), by PostgreSQL's NOTIFY
// from the others, and polls every second in case a notification was lost.
// A subscriber that does not keep up loses events rather than slowing the
// feed; it is told how many and may resume from the log.
type Bus struct {
	db       *gorm.DB
	postgres bool
	log      hclog.Logger
	kick     chan struct{}

	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	cursor int64 // the last Seq fanned out
	stop   context.CancelFunc
	gap    gapWait

	nmu         sync.Mutex
	notifying   bool // a NOTIFY is being sent
	notifyAgain bool // and another is due after it
}

// gapWait is a hole in the log's ids the feed waits on: on PostgreSQL ids
// are handed out before commit, so a lower id may still be committing (or
// was rolled back). It is settled once every transaction that was running
// when it was seen has ended.
type gapWait struct {
	id      int64 // the missing id (the cursor's successor)
	xmax    int64 // transactions from this one on started after the gap was seen
	settled bool
}

// Subscription receives the events that match its filter, from the one
// after From on.
type Subscription struct {
	C chan Event
	// From is the Seq of the last event in the log when the subscription
	// started: live delivery begins after it; Replay covers what came
	// before.
	From    int64
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

// NewBus returns a bus over db's event log.
func NewBus(db *gorm.DB, postgres bool, log hclog.Logger) *Bus {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Bus{db: db, postgres: postgres, log: log.Named("events"), kick: make(chan struct{}, 1), subs: map[*Subscription]struct{}{}}
}

// eventRow is one entry of the event log.
type eventRow struct {
	ID   int64
	At   time.Time
	Body string
}

func (eventRow) TableName() string { return "events" }

// Record writes events into the log inside tx, the transaction that made
// them, after its other writes (the feed's rule for ids still committing
// relies on the transaction holding an id before it takes log ids); Kick
// the bus once it commits. All go in one statement: the database splits a
// JSON array into rows, so a batch of a thousand costs about one insert.
func (b *Bus) Record(tx *gorm.DB, events []Event) error {
	if b == nil || len(events) == 0 {
		return nil
	}
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i := range events {
		if i > 0 {
			buf.WriteByte(',')
		}
		body, err := json.Marshal(&events[i])
		if err != nil {
			return err
		}
		buf.Write(body)
	}
	buf.WriteByte(']')
	if b.postgres {
		// json, not jsonb: each element's text is kept as it was written.
		// pg_current_xact_id() in the WHERE runs before the first id is
		// taken, so the transaction holds an id even if nothing came first.
		return tx.Exec(`INSERT INTO events (at, body) SELECT (e->>'at')::timestamptz, e::text
			FROM json_array_elements(?::json) e WHERE pg_current_xact_id() IS NOT NULL`, buf.String()).Error
	}
	// The time as the SQLite driver writes times (2006-01-02 15:04:05.999999999-07:00),
	// so pruning compares like with like.
	return tx.Exec(`INSERT INTO events (at, body) SELECT replace(replace(json_extract(value, '$.at'), 'T', ' '), 'Z', '+00:00'), value
		FROM json_each(?)`, buf.String()).Error
}

// Kick wakes the feed after this process committed events, and on
// PostgreSQL the other replicas' feeds with a NOTIFY (sent after the
// commit, not in it: a notifying commit takes a database-wide lock, which
// would serialise the annealer's transactions).
func (b *Bus) Kick() {
	if b == nil {
		return
	}
	select {
	case b.kick <- struct{}{}:
	default:
	}
	if b.postgres {
		b.notifyOthers()
	}
}

// notifyOthers sends one NOTIFY at a time; kicks meanwhile are coalesced
// into the next.
func (b *Bus) notifyOthers() {
	b.nmu.Lock()
	if b.notifying {
		b.notifyAgain = true
		b.nmu.Unlock()
		return
	}
	b.notifying = true
	b.nmu.Unlock()
	go func() {
		for {
			if err := b.db.Exec("SELECT pg_notify(?, '')", notifyChannel).Error; err != nil {
				b.log.Debug("telling other replicas about new events failed (they poll every second)", "error", err)
			}
			b.nmu.Lock()
			if !b.notifyAgain {
				b.notifying = false
				b.nmu.Unlock()
				return
			}
			b.notifyAgain = false
			b.nmu.Unlock()
		}
	}()
}

// Subscribe starts delivering matching events logged from now on; call
// Unsubscribe when done. The first subscriber starts the feed.
func (b *Bus) Subscribe(ctx context.Context, f Filter) (*Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stop == nil {
		var last int64
		if err := b.db.WithContext(ctx).Model(&eventRow{}).Select("COALESCE(MAX(id), 0)").Scan(&last).Error; err != nil {
			return nil, fmt.Errorf("read the event log: %w", err)
		}
		fctx, stop := context.WithCancel(context.Background())
		b.cursor, b.stop, b.gap = last, stop, gapWait{}
		go b.feed(fctx)
	}
	s := &Subscription{C: make(chan Event, 1024), filter: f, From: b.cursor}
	b.subs[s] = struct{}{}
	return s, nil
}

// Unsubscribe stops delivery to s; the last one out stops the feed.
func (b *Bus) Unsubscribe(s *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.subs, s)
	if len(b.subs) == 0 && b.stop != nil {
		b.stop()
		b.stop = nil
	}
}

// feed fans the log out until ctx ends.
func (b *Bus) feed(ctx context.Context) {
	notified := make(chan struct{}, 1)
	if b.postgres {
		go b.listen(ctx, notified)
	}
	for {
		wait := time.Second
		if pending, err := b.poll(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			b.log.Warn("reading the event log failed; retrying", "error", err)
		} else if pending {
			wait = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		case <-notified:
		case <-time.After(wait):
		}
	}
}

// pollBatch is how many log entries one read takes.
const pollBatch = 1000

// poll fans out what the log holds after the cursor, in id order. It stops
// at a hole that may still fill (pending: look again soon).
func (b *Bus) poll(ctx context.Context) (pending bool, err error) {
	b.mu.Lock()
	cursor := b.cursor
	b.mu.Unlock()
	for {
		var rows []eventRow
		if err := b.db.WithContext(ctx).Where("id > ?", cursor).Order("id").Limit(pollBatch).Find(&rows).Error; err != nil {
			return false, err
		}
		reread := false
		b.mu.Lock()
		if ctx.Err() != nil { // stopped meanwhile: a newer feed may own the cursor
			b.mu.Unlock()
			return false, ctx.Err()
		}
		for _, r := range rows {
			if r.ID != b.cursor+1 && b.postgres {
				if b.gap.id != b.cursor+1 || !b.gap.settled {
					b.mu.Unlock()
					settled, err := b.settle(ctx)
					if err != nil || !settled {
						return err == nil, err
					}
					reread = true // the hole may have filled just before it settled
					b.mu.Lock()
					break
				}
				// Settled and re-read: the id was never committed.
			}
			var ev Event
			if err := json.Unmarshal([]byte(r.Body), &ev); err != nil {
				b.log.Error("skipping an unreadable event log entry", "id", r.ID, "error", err)
			} else {
				ev.Seq = r.ID
				b.fanOut(&ev)
			}
			b.cursor = r.ID
		}
		cursor = b.cursor
		b.mu.Unlock()
		if !reread && len(rows) < pollBatch {
			return false, nil
		}
	}
}

// settle reports whether the hole after the cursor can no longer fill:
// when first seen it notes the next transaction id to be handed out; once
// every transaction before that one has ended, whatever held the missing
// id has committed or rolled back.
func (b *Bus) settle(ctx context.Context) (bool, error) {
	b.mu.Lock()
	hole := b.cursor + 1
	known := b.gap.id == hole
	xmax := b.gap.xmax
	b.mu.Unlock()
	if !known {
		if err := b.db.WithContext(ctx).Raw("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").Scan(&xmax).Error; err != nil {
			return false, err
		}
		b.mu.Lock()
		b.gap = gapWait{id: hole, xmax: xmax}
		b.mu.Unlock()
		return false, nil
	}
	var xmin int64
	if err := b.db.WithContext(ctx).Raw("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").Scan(&xmin).Error; err != nil {
		return false, err
	}
	if xmin < xmax {
		return false, nil
	}
	b.mu.Lock()
	b.gap.settled = true
	b.mu.Unlock()
	return true, nil
}

// fanOut delivers ev to every matching subscriber without blocking; b.mu
// is held.
func (b *Bus) fanOut(ev *Event) {
	for s := range b.subs {
		if !s.filter.match(ev) {
			continue
		}
		select {
		case s.C <- *ev:
		default:
			s.mu.Lock()
			s.dropped++
			s.mu.Unlock()
		}
	}
}

// listen holds a connection LISTENing on the event channel and signals
// notified on each notification; it reconnects after a failure.
func (b *Bus) listen(ctx context.Context, notified chan<- struct{}) {
	for ctx.Err() == nil {
		err := b.listenOnce(ctx, notified)
		if ctx.Err() != nil {
			return
		}
		b.log.Warn("listening for other replicas' events failed; polling every second until it works again", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

func (b *Bus) listenOnce(ctx context.Context, notified chan<- struct{}) error {
	sqlDB, err := b.db.DB()
	if err != nil {
		return err
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("the PostgreSQL driver connection is a %T, not pgx's", dc)
		}
		pc := sc.Conn()
		if _, err := pc.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
			return err
		}
		defer pc.Exec(context.Background(), "UNLISTEN "+notifyChannel) //nolint:errcheck
		// A change may have committed before LISTEN took effect.
		select {
		case notified <- struct{}{}:
		default:
		}
		for {
			if _, err := pc.WaitForNotification(ctx); err != nil {
				return err
			}
			select {
			case notified <- struct{}{}:
			default:
			}
		}
	})
}

// Replay calls fn with the logged events matching s's filter that came
// after seq `after` and up to s.From, in order. lost is set when events
// after `after` were already pruned from the log.
func (b *Bus) Replay(ctx context.Context, s *Subscription, after int64, fn func(Event) error) (lost bool, err error) {
	var first int64
	if err := b.db.WithContext(ctx).Model(&eventRow{}).Select("COALESCE(MIN(id), 0)").Scan(&first).Error; err != nil {
		return false, err
	}
	lost = after < s.From && (first == 0 || first > after+1)
	for after < s.From {
		var rows []eventRow
		if err := b.db.WithContext(ctx).Where("id > ? AND id <= ?", after, s.From).Order("id").Limit(pollBatch).Find(&rows).Error; err != nil {
			return lost, err
		}
		if len(rows) == 0 {
			break
		}
		for _, r := range rows {
			after = r.ID
			var ev Event
			if json.Unmarshal([]byte(r.Body), &ev) != nil {
				continue
			}
			ev.Seq = r.ID
			if s.filter.match(&ev) {
				if err := fn(ev); err != nil {
					return lost, err
				}
			}
		}
	}
	return lost, nil
}

// Prune deletes log entries older than keep; every replica may run it.
func (b *Bus) Prune(ctx context.Context, keep time.Duration) (int64, error) {
	res := b.db.WithContext(ctx).Where("at < ?", time.Now().UTC().Add(-keep)).Delete(&eventRow{})
	return res.RowsAffected, res.Error
}
