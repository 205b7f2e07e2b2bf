// Package core0 is Zero-OS's node command protocol (core0), shared by the
// two ends crowbar has: the agent that serves it on a machine and the
// server's client that drives nodes. Commands are JSON objects pushed with
// RPUSH core:default over the Redis wire protocol (TLS and a JWT given with
// AUTH); results and output streams are read back from lists named after
// the job id. See docs/agent.md for the whole protocol as crowbar speaks it.
package core0

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Queue is the list commands are pushed to.
const Queue = "core:default"

// Keys of the lists a job's results and output are read from.
func ResultKey(id string) string { return "result:" + id }

// FlagKey is the list a node pushes to once it has accepted job id.
func FlagKey(id string) string { return "result:" + id + ":flag" }

// StreamKey is the list a streaming job's output lines go to.
func StreamKey(id string) string { return "stream:" + id }

// Command is one job sent to a node.
type Command struct {
	ID              string          `json:"id"`
	Command         string          `json:"command"`
	Arguments       json.RawMessage `json:"arguments"`
	Queue           string          `json:"queue,omitempty"`
	MaxTime         int             `json:"max_time,omitempty"`
	Stream          bool            `json:"stream"`
	Tags            []string        `json:"tags"`
	RecurringPeriod int             `json:"recurring_period,omitempty"`
	// Accepted for compatibility with core0's command documentation; the
	// agent does not act on them.
	StatsInterval int   `json:"stats_interval,omitempty"`
	MaxRestart    int   `json:"max_restart,omitempty"`
	LogLevels     []int `json:"log_levels,omitempty"`
}

// UnmarshalJSON reads a command as the clients send it: queue, max_time
// and tags may be null.
func (c *Command) UnmarshalJSON(b []byte) error {
	var raw struct {
		ID              *string         `json:"id"`
		Command         *string         `json:"command"`
		Arguments       json.RawMessage `json:"arguments"`
		Queue           *string         `json:"queue"`
		MaxTime         *float64        `json:"max_time"`
		Stream          *bool           `json:"stream"`
		Tags            []string        `json:"tags"`
		RecurringPeriod *float64        `json:"recurring_period"`
		StatsInterval   *int            `json:"stats_interval"`
		MaxRestart      *int            `json:"max_restart"`
		LogLevels       []int           `json:"log_levels"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*c = Command{Arguments: raw.Arguments, Tags: raw.Tags, LogLevels: raw.LogLevels}
	if raw.ID != nil {
		c.ID = *raw.ID
	}
	if raw.Command != nil {
		c.Command = *raw.Command
	}
	if raw.Queue != nil {
		c.Queue = *raw.Queue
	}
	if raw.MaxTime != nil {
		if *raw.MaxTime < 0 {
			return fmt.Errorf("max_time %v: must not be negative", *raw.MaxTime)
		}
		c.MaxTime = int(*raw.MaxTime)
	}
	if raw.Stream != nil {
		c.Stream = *raw.Stream
	}
	if raw.RecurringPeriod != nil {
		if *raw.RecurringPeriod < 0 {
			return fmt.Errorf("recurring_period %v: must not be negative", *raw.RecurringPeriod)
		}
		c.RecurringPeriod = int(*raw.RecurringPeriod)
	}
	if raw.StatsInterval != nil {
		c.StatsInterval = *raw.StatsInterval
	}
	if raw.MaxRestart != nil {
		c.MaxRestart = *raw.MaxRestart
	}
	if len(c.Arguments) == 0 || string(c.Arguments) == "null" {
		c.Arguments = json.RawMessage("{}")
	}
	return nil
}

// State is how a job ended.
type State string

// The states a result can carry.
const (
	StateSuccess     State = "SUCCESS"
	StateError       State = "ERROR"
	StateKilled      State = "KILLED"
	StateTimeout     State = "TIMEOUT"
	StateUnknownCmd  State = "UNKNOWN_CMD"
	StateDuplicateID State = "DUPLICATE_ID"
)

// LevelJSON marks a result whose data is a JSON text.
const LevelJSON = 20

// Codes a result carries when no process exit code applies; a process's
// exit code c is reported as ExitCodeBase + c.
const (
	CodeOK          = 200
	CodeBadRequest  = 400
	CodeNotFound    = 404
	CodeTimeout     = 408
	CodeConflict    = 409
	CodeServerError = 500
	CodeUnknown     = 501
	ExitCodeBase    = 1000
)

// Result is what a node answers for a job.
type Result struct {
	ID        string   `json:"id"`
	Command   string   `json:"command"`
	Data      string   `json:"data"`
	Streams   []string `json:"streams"`
	Critical  string   `json:"critical,omitempty"`
	Level     int      `json:"level"`
	State     State    `json:"state"`
	Code      int      `json:"code"`
	StartTime int64    `json:"starttime"` // ms since the epoch
	Time      int64    `json:"time"`      // ms it ran
	Tags      []string `json:"tags"`
	Container int      `json:"container"`
}

// Stdout is the captured standard output.
func (r *Result) Stdout() string {
	if len(r.Streams) > 0 {
		return r.Streams[0]
	}
	return ""
}

// Stderr is the captured standard error.
func (r *Result) Stderr() string {
	if len(r.Streams) > 1 {
		return r.Streams[1]
	}
	return ""
}

// ExitCode is the process's exit code, or -1 when the code is not one.
func (r *Result) ExitCode() int {
	if r.Code >= ExitCodeBase {
		return r.Code - ExitCodeBase
	}
	return -1
}

// Stream levels and end flags, packed into StreamMessage.Meta as
// level<<16 | flags.
const (
	LevelStdout   = 1
	LevelStderr   = 2
	FlagEOFOK     = 0x2
	FlagEOFFailed = 0x4
)

// StreamLine is one element of a stream:<id> list.
type StreamLine struct {
	Core    int           `json:"core"`
	Command string        `json:"command"`
	Message StreamMessage `json:"message"`
}

// StreamMessage is one line of a job's output.
type StreamMessage struct {
	Message string `json:"message"`
	Epoch   int64  `json:"epoch"` // ns since the epoch
	Meta    uint32 `json:"meta"`
}

// Level is the message's level (LevelStdout, LevelStderr).
func (m StreamMessage) Level() int { return int(m.Meta >> 16) }

// EOF reports whether this is the last message of the stream.
func (m StreamMessage) EOF() bool { return m.Meta&(FlagEOFOK|FlagEOFFailed) != 0 }

// Failed reports whether the stream ended with the process failing.
func (m StreamMessage) Failed() bool { return m.Meta&FlagEOFFailed != 0 }

// SystemArgs are core.system's arguments.
type SystemArgs struct {
	Name  string            `json:"name"`
	Args  []string          `json:"args"`
	Dir   string            `json:"dir"`
	Stdin string            `json:"stdin"`
	Env   map[string]string `json:"env"`
}

// BashArgs are bash's arguments.
type BashArgs struct {
	Script string `json:"script"`
	Stdin  string `json:"stdin"`
}

// Job is a running job as job.list reports it.
type Job struct {
	Command   Command `json:"cmd"`
	PID       int32   `json:"pid"`
	StartTime int64   `json:"starttime"` // ms since the epoch
	CPU       float64 `json:"cpu"`
	RSS       uint64  `json:"rss"`
	VMS       uint64  `json:"vms"`
	Swap      uint64  `json:"swap"`
}

// Process is one process as process.list reports it.
type Process struct {
	Cmdline string   `json:"cmdline"`
	CPU     CPUTimes `json:"cpu"`
	PID     int32    `json:"pid"`
	PPID    int32    `json:"ppid"`
	RSS     uint64   `json:"rss"`
	VMS     uint64   `json:"vms"`
	Swap    uint64   `json:"swap"`
}

// CPUTimes are a process's CPU times in seconds, with the orchestrator's
// field names.
type CPUTimes struct {
	GuestNice float64 `json:"guestnice"`
	Idle      float64 `json:"idle"`
	IOWait    float64 `json:"iowait"`
	IRQ       float64 `json:"irq"`
	Nice      float64 `json:"nice"`
	SoftIRQ   float64 `json:"softirq"`
	Steal     float64 `json:"steal"`
	Stolen    float64 `json:"stolen"`
	System    float64 `json:"system"`
	User      float64 `json:"user"`
}

// ParseKey splits a result, flag or stream key into its kind and job id.
func ParseKey(key string) (kind, id string) {
	switch {
	case strings.HasPrefix(key, "result:") && strings.HasSuffix(key, ":flag"):
		return "flag", strings.TrimSuffix(strings.TrimPrefix(key, "result:"), ":flag")
	case strings.HasPrefix(key, "result:"):
		return "result", strings.TrimPrefix(key, "result:")
	case strings.HasPrefix(key, "stream:"):
		return "stream", strings.TrimPrefix(key, "stream:")
	}
	return "", ""
}
