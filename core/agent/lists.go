package agent

import (
	"context"
	"sync"
	"time"
)

// lists is the agent's small Redis: named lists of byte strings with
// optional expiry, and blocking pops. Jobs write their flags, results and
// output streams here; clients read them with the Redis list commands.
type lists struct {
	mu    sync.Mutex
	m     map[string]*list
	now   func() time.Time
	wake  map[string]chan struct{} // closed when the key gets an element
	bytes int64
}

type list struct {
	items    [][]byte
	expireAt time.Time // zero: no expiry
}

func newLists() *lists {
	return &lists{m: map[string]*list{}, wake: map[string]chan struct{}{}, now: time.Now}
}

// get returns the live list at key, dropping it if it expired.
func (l *lists) get(key string) *list {
	li := l.m[key]
	if li != nil && !li.expireAt.IsZero() && !l.now().Before(li.expireAt) {
		l.drop(key)
		return nil
	}
	return li
}

func (l *lists) drop(key string) {
	if li := l.m[key]; li != nil {
		for _, it := range li.items {
			l.bytes -= int64(len(it))
		}
		delete(l.m, key)
	}
}

func (l *lists) signal(key string) {
	if ch, ok := l.wake[key]; ok {
		close(ch)
		delete(l.wake, key)
	}
}

// push appends values to key (RPUSH) and returns the new length. max > 0
// drops the oldest elements beyond max.
func (l *lists) push(key string, max int, values ...[]byte) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	li := l.get(key)
	if li == nil {
		li = &list{}
		l.m[key] = li
	}
	for _, v := range values {
		li.items = append(li.items, v)
		l.bytes += int64(len(v))
	}
	if max > 0 && len(li.items) > max {
		for _, it := range li.items[:len(li.items)-max] {
			l.bytes -= int64(len(it))
		}
		li.items = append([][]byte(nil), li.items[len(li.items)-max:]...)
	}
	l.signal(key)
	return len(li.items)
}

// set makes key a list holding only value.
func (l *lists) set(key string, value []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	exp := time.Time{}
	if li := l.get(key); li != nil {
		exp = li.expireAt
	}
	l.drop(key)
	l.m[key] = &list{items: [][]byte{value}, expireAt: exp}
	l.bytes += int64(len(value))
	l.signal(key)
}

// expire sets key to vanish after d.
func (l *lists) expire(key string, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if li := l.get(key); li != nil {
		li.expireAt = l.now().Add(d)
	}
}

// del removes keys and returns how many existed.
func (l *lists) del(keys ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, k := range keys {
		if l.get(k) != nil {
			l.drop(k)
			n++
		}
	}
	return n
}

func (l *lists) exists(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.get(key) != nil
}

func (l *lists) length(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if li := l.get(key); li != nil {
		return len(li.items)
	}
	return 0
}

// ttl answers as Redis's TTL does: -2 missing, -1 no expiry, else seconds.
func (l *lists) ttl(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	li := l.get(key)
	switch {
	case li == nil:
		return -2
	case li.expireAt.IsZero():
		return -1
	}
	s := int(li.expireAt.Sub(l.now()).Round(time.Second) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// lrange returns elements start..stop (inclusive, negative from the end).
func (l *lists) lrange(key string, start, stop int) [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	li := l.get(key)
	if li == nil {
		return nil
	}
	n := len(li.items)
	if start < 0 {
		start += n
	}
	if stop < 0 {
		stop += n
	}
	if start < 0 {
		start = 0
	}
	if stop >= n {
		stop = n - 1
	}
	if start > stop {
		return nil
	}
	return append([][]byte(nil), li.items[start:stop+1]...)
}

// popFront removes and returns key's first element (LPOP).
func (l *lists) popFront(key string) ([]byte, bool) {
	li := l.get(key)
	if li == nil || len(li.items) == 0 {
		return nil, false
	}
	v := li.items[0]
	li.items = li.items[1:]
	l.bytes -= int64(len(v))
	if len(li.items) == 0 {
		delete(l.m, key)
	}
	return v, true
}

// rotate pops src's last element and pushes it at dst's head (RPOPLPUSH).
func (l *lists) rotate(src, dst string) ([]byte, bool) {
	li := l.get(src)
	if li == nil || len(li.items) == 0 {
		return nil, false
	}
	v := li.items[len(li.items)-1]
	li.items = li.items[:len(li.items)-1]
	d := l.get(dst)
	if d == nil {
		if len(li.items) == 0 && src == dst {
			d = li
		} else {
			d = &list{}
			l.m[dst] = d
		}
	}
	d.items = append([][]byte{v}, d.items...)
	if len(li.items) == 0 && src != dst {
		delete(l.m, src)
	}
	return v, true
}

// wait blocks until one of keys may have an element, the timeout passes
// (0: forever) or ctx ends; take runs under the lock and reports whether
// it got what it waited for.
func (l *lists) wait(ctx context.Context, keys []string, timeout time.Duration, take func() bool) bool {
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	for {
		l.mu.Lock()
		if take() {
			l.mu.Unlock()
			return true
		}
		chs := make([]chan struct{}, len(keys))
		for i, k := range keys {
			ch, ok := l.wake[k]
			if !ok {
				ch = make(chan struct{})
				l.wake[k] = ch
			}
			chs[i] = ch
		}
		l.mu.Unlock()
		if len(chs) == 1 {
			select {
			case <-chs[0]:
				continue
			case <-deadline:
				return false
			case <-ctx.Done():
				return false
			}
		}
		woke := make(chan struct{}, 1)
		stop := make(chan struct{})
		for _, ch := range chs {
			go func(ch chan struct{}) {
				select {
				case <-ch:
					select {
					case woke <- struct{}{}:
					default:
					}
				case <-stop:
				}
			}(ch)
		}
		select {
		case <-woke:
			close(stop)
		case <-deadline:
			close(stop)
			return false
		case <-ctx.Done():
			close(stop)
			return false
		}
	}
}

// blockingRotate is BRPOPLPUSH.
func (l *lists) blockingRotate(ctx context.Context, src, dst string, timeout time.Duration) ([]byte, bool) {
	var v []byte
	ok := l.wait(ctx, []string{src}, timeout, func() bool {
		var got bool
		v, got = l.rotate(src, dst)
		return got
	})
	return v, ok
}

// blockingPopFront is BLPOP over keys: the first key with an element wins.
func (l *lists) blockingPopFront(ctx context.Context, keys []string, timeout time.Duration) (string, []byte, bool) {
	var key string
	var v []byte
	ok := l.wait(ctx, keys, timeout, func() bool {
		for _, k := range keys {
			if val, got := l.popFront(k); got {
				key, v = k, val
				return true
			}
		}
		return false
	})
	return key, v, ok
}

// sweep drops expired lists; the janitor calls it.
func (l *lists) sweep() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for k, li := range l.m {
		if !li.expireAt.IsZero() && !now.Before(li.expireAt) {
			l.drop(k)
		}
	}
}

// size returns the number of lists and the bytes they hold.
func (l *lists) size() (int, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m), l.bytes
}
