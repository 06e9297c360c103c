// Package nvsprovider puts nvsrelayd behind the watcher interfaces NVIDIA
// NVSentinel's components already consume, so a component moves from its
// in-process PostgreSQL watcher to the relay by configuration alone.
//
// A *Watcher has the method set of NVSentinel's
// datastore.ChangeStreamWatcher (Start, Events, MarkProcessed, Close) plus
// the optional methods components look for: Unwrap (to the
// client.ChangeStreamWatcher view, whose events are client.Events),
// ResumeControlDecision, LagState and GetUnprocessedEventCount. The types
// that NVSentinel names in those signatures are declared here with the same
// shape (EventWithToken, ClientEvent, ResumeControlDecision); the small
// bridge in NVSentinel's store-client (nvsentinel/*.patch) converts between
// the two spellings and nothing else.
//
// Events are the maps NVSentinel's own PostgreSQL watcher builds for the
// same change (see Convert), and resume tokens are the changelog id in
// decimal, as there. Where the relay deliberately behaves differently, the
// README's "NVSentinel provider" section says so.
//
// Construction does no I/O. Start connects, and keeps reconnecting with
// backoff for as long as the watcher lives, resuming from the last
// acknowledged position; the events channel is closed only by Close, the
// end of Start's context, or an error reconnecting cannot cure (a pipeline
// the relay refuses, a position it no longer has, another reader taking
// over the consumer), which Err returns and the log states. NVSentinel's
// components treat a closed channel as fatal and exit, which is the intent.
package nvsprovider

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"math/rand"
	"strconv"
	"sync"
	"time"

	"nvsrelay.local/nvsrelay"
)

// EventWithToken has the shape of NVSentinel's datastore.EventWithToken.
type EventWithToken struct {
	Event       map[string]interface{}
	ResumeToken []byte
}

// ClientEvent has the method set of NVSentinel's client.Event.
type ClientEvent interface {
	GetDocumentID() (string, error)
	GetRecordUUID() (string, error)
	GetNodeName() (string, error)
	GetResumeToken() []byte
	UnmarshalDocument(v interface{}) error
}

// ClientChangeStreamWatcher has the method set of NVSentinel's
// client.ChangeStreamWatcher.
type ClientChangeStreamWatcher interface {
	Start(ctx context.Context)
	Events() <-chan ClientEvent
	MarkProcessed(ctx context.Context, token []byte) error
	Close(ctx context.Context) error
}

// ResumeControlDecision has the shape of NVSentinel's
// client.ResumeControlDecision. The watcher only carries it: the decision
// is taken (and a CREATE's token deleted) before the watcher is built.
type ResumeControlDecision struct {
	StartFresh      bool
	ColdStartCutoff time.Time
}

// Options say where the relay is and what to watch.
type Options struct {
	// Socket is nvsrelayd's Unix socket; else Addr (host:port) with TLS
	// (nil: plaintext, loopback only) and an optional bearer Token.
	Socket string
	Addr   string
	TLS    *tls.Config
	Token  string

	// ClientName is the component's name: the consumer whose position
	// the relay keeps in resume_tokens, as NVSentinel's watcher does.
	ClientName string
	// Table is health_events (default) or maintenance_events;
	// NVSentinel's HealthEvents and MaintenanceEvents are accepted.
	Table string
	// Pipeline is what the component passes to CreateChangeStreamWatcher,
	// in any form NVSentinel builds (see ConvertPipeline).
	Pipeline interface{}
	// Decision is handed back by ResumeControlDecision.
	Decision ResumeControlDecision

	// DialTimeout bounds one connection attempt (default 10 s).
	// MinBackoff and MaxBackoff bound the wait between attempts (defaults
	// 200 ms and 10 s; each wait doubles, with jitter).
	DialTimeout            time.Duration
	MinBackoff, MaxBackoff time.Duration
	// Logf receives connection trouble and the fatal error (default: the
	// standard logger).
	Logf func(format string, args ...interface{})
}

// ErrUnknownToken is returned by MarkProcessed and GetUnprocessedEventCount
// for a token this watcher did not hand over (malformed, foreign, or from an
// earlier process). The stream is not affected.
var ErrUnknownToken = errors.New("nvsprovider: not a position this watcher handed over")

// keepTokens bounds how many acknowledged positions stay recognisable, so a
// late MarkProcessed of an older event (a work queue acknowledging out of
// order) is a harmless no-op rather than an error.
const keepTokens = 65536

type handed struct {
	id  string // changelog id, the ResumeToken
	tok string // relay token
}

// Watcher is the relay-backed change stream of one component.
type Watcher struct {
	opts     Options
	pipeline json.RawMessage
	logf     func(format string, args ...interface{})

	dsEvents chan EventWithToken
	clEvents chan ClientEvent
	client   *clientView

	startOnce, closeOnce sync.Once
	cancel               context.CancelFunc
	done                 chan struct{} // closed when run returns

	mu      sync.Mutex
	rw      *nvsrelay.Watcher // the current connection, nil until one
	err     error
	tokens  map[string]string // changelog id -> relay token, of handed events
	order   []handed          // the same, in delivery order
	last    string            // relay token of the last event handed over
	acked   string            // highest relay token acknowledged
	lagRead time.Time         // clusterTime of the last event handed over
	lagIdle time.Time         // when the relay last said nothing was pending
}

// New checks the options and converts the pipeline; it does no I/O.
func New(opts Options) (*Watcher, error) {
	if opts.Socket == "" && opts.Addr == "" {
		return nil, errors.New("nvsprovider: Options needs Socket or Addr")
	}
	if opts.ClientName == "" {
		return nil, errors.New("nvsprovider: ClientName is required: it keys the component's position")
	}
	if opts.Table == "" {
		opts.Table = "health_events"
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 10 * time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 200 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = 10 * time.Second
		if opts.MaxBackoff < opts.MinBackoff {
			opts.MaxBackoff = opts.MinBackoff
		}
	}
	p, err := ConvertPipeline(opts.Pipeline)
	if err != nil {
		return nil, err
	}
	w := &Watcher{
		opts:     opts,
		pipeline: p,
		logf:     opts.Logf,
		dsEvents: make(chan EventWithToken),
		clEvents: make(chan ClientEvent),
		done:     make(chan struct{}),
		tokens:   make(map[string]string),
	}
	if w.logf == nil {
		w.logf = log.Printf
	}
	w.client = &clientView{w: w}
	return w, nil
}

// Events delivers the changes in commit order. The channel is shared with
// the Unwrap view: a component reads one of the two.
func (w *Watcher) Events() <-chan EventWithToken { return w.dsEvents }

// Unwrap returns the client.ChangeStreamWatcher view of the same stream.
func (w *Watcher) Unwrap() ClientChangeStreamWatcher { return w.client }

// ResumeControlDecision returns the decision the watcher was built with.
func (w *Watcher) ResumeControlDecision() ResumeControlDecision { return w.opts.Decision }

// LagState reports when the relay last said the stream had caught up
// (nothing pending after the last event handed over) and the clusterTime
// of the newest event handed over; zero times mean unknown.
func (w *Watcher) LagState() (lastEmptyBatch, lastEventRead time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lagIdle, w.lagRead
}

// Err says why the events channel closed: nil after Close or the end of
// Start's context, else the fatal error (often a *nvsrelay.ServerError
// carrying the relay's message). Nil while the stream runs.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Start connects in the background and returns once the first attempt has
// an answer (or DialTimeout passed), so a pipeline or position the relay
// refuses has already closed the channel, with Err saying why, when Start
// returns. Later calls do nothing.
func (w *Watcher) Start(ctx context.Context) {
	w.startOnce.Do(func() {
		ctx, cancel := context.WithCancel(ctx)
		w.mu.Lock()
		w.cancel = cancel
		w.mu.Unlock()
		first := make(chan struct{})
		go w.run(ctx, first)
		t := time.NewTimer(w.opts.DialTimeout + time.Second)
		defer t.Stop()
		select {
		case <-first:
		case <-t.C:
		}
	})
}

// Close ends the stream: a pending acknowledgement is sent first, then the
// channel is closed. It may be called more than once, also before Start.
func (w *Watcher) Close(ctx context.Context) error {
	w.closeOnce.Do(func() {
		w.startOnce.Do(func() { // never started: no goroutine owns the channels
			close(w.dsEvents)
			close(w.clEvents)
			close(w.done)
		})
		w.mu.Lock()
		cancel := w.cancel
		w.mu.Unlock()
		if cancel != nil {
			cancel()
		}
	})
	select {
	case <-w.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// MarkProcessed acknowledges the event whose ResumeToken is token and every
// event before it; the relay stores that as the component's position. An
// empty token means the current position: the last event handed over (and
// beyond it, while nothing else is pending, what the pipeline filtered out).
// A token this watcher did not hand over returns ErrUnknownToken and changes
// nothing; acknowledging an older event than one already acknowledged is a
// no-op.
func (w *Watcher) MarkProcessed(ctx context.Context, token []byte) error {
	w.mu.Lock()
	rw := w.rw
	var tok string
	if len(token) == 0 {
		tok = w.last
	} else {
		t, ok := w.tokens[string(token)]
		if !ok {
			w.mu.Unlock()
			return fmt.Errorf("%w: %q", ErrUnknownToken, truncate(string(token), 48))
		}
		tok = t
	}
	if tok == "" || tok <= w.acked {
		w.mu.Unlock()
		return nil
	}
	w.acked = tok
	w.trimLocked()
	w.mu.Unlock()
	if rw == nil {
		return errors.New("nvsprovider: MarkProcessed: not connected")
	}
	return rw.MarkProcessed(tok)
}

// GetUnprocessedEventCount asks the relay how many changes of the table
// follow the event lastProcessedID (a ResumeToken / GetDocumentID value this
// watcher handed over; empty: the current position). The figure is the
// relay's count (PROTOCOL.md, "count"): rows after that changelog id, the
// pipeline not applied, as NVSentinel's own watcher counted.
func (w *Watcher) GetUnprocessedEventCount(ctx context.Context, lastProcessedID string) (int64, error) {
	w.mu.Lock()
	var tok string
	if lastProcessedID == "" {
		tok = w.last
		if tok == "" && w.rw != nil {
			tok = w.rw.Position()
		}
	} else {
		tok = w.tokens[lastProcessedID]
	}
	w.mu.Unlock()
	if tok == "" {
		if lastProcessedID == "" {
			return 0, errors.New("nvsprovider: GetUnprocessedEventCount: no position yet")
		}
		if _, err := strconv.ParseInt(lastProcessedID, 10, 64); err != nil {
			return 0, fmt.Errorf("nvsprovider: invalid lastProcessedID format: %q", truncate(lastProcessedID, 48))
		}
		return 0, fmt.Errorf("%w: %s", ErrUnknownToken, lastProcessedID)
	}
	return nvsrelay.Count(ctx, w.relayOptions(), w.opts.Table, tok)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// trimLocked forgets the oldest acknowledged positions beyond keepTokens.
func (w *Watcher) trimLocked() {
	n := 0
	for n < len(w.order)-keepTokens && w.order[n].tok <= w.acked {
		delete(w.tokens, w.order[n].id)
		n++
	}
	if n > 0 {
		w.order = append(w.order[:0:0], w.order[n:]...)
	}
}

func (w *Watcher) relayOptions() nvsrelay.Options {
	o := nvsrelay.Options{
		Socket:      w.opts.Socket,
		Addr:        w.opts.Addr,
		Token:       w.opts.Token,
		Client:      w.opts.ClientName,
		Table:       w.opts.Table,
		Consumer:    w.opts.ClientName,
		DialTimeout: w.opts.DialTimeout,
		MinBackoff:  w.opts.MinBackoff,
		MaxBackoff:  w.opts.MaxBackoff,
		// The pre-image lets updatedFields be computed exactly as
		// NVSentinel does (see Convert); it is not handed on for updates.
		FullDocumentBeforeChange: "whenAvailable",
		Logf:                     w.logf,
		OnBookmark:               w.bookmark,
	}
	if w.opts.TLS != nil {
		o.TLS = w.opts.TLS.Clone()
	}
	if w.pipeline != nil {
		o.Pipeline = w.pipeline
	}
	return o
}

// bookmark: every event before it was read by the forwarder; once the
// forwarder has handed all of them over, the stream has caught up.
func (w *Watcher) bookmark(string) {
	w.mu.Lock()
	w.lagIdle = time.Now()
	w.mu.Unlock()
}

func (w *Watcher) fail(err error) {
	w.mu.Lock()
	w.err = err
	w.mu.Unlock()
	w.logf("nvsprovider: %s: change stream ended: %v", w.opts.ClientName, err)
}

// run owns the channels: it alone sends on and closes them.
func (w *Watcher) run(ctx context.Context, first chan struct{}) {
	defer close(w.done)
	defer close(w.dsEvents)
	defer close(w.clEvents)
	signal := func() {
		if first != nil {
			close(first)
			first = nil
		}
	}
	defer signal()
	backoff := w.opts.MinBackoff
	for {
		rw, err := nvsrelay.Dial(ctx, w.relayOptions())
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if fatal(err) {
				w.fail(err)
				return
			}
			signal()
			w.logf("nvsprovider: %s: cannot reach nvsrelayd (%v); retrying", w.opts.ClientName, err)
			wait := backoff/2 + time.Duration(rand.Int63n(int64(backoff)))
			if backoff *= 2; backoff > w.opts.MaxBackoff {
				backoff = w.opts.MaxBackoff
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		signal()
		w.mu.Lock()
		w.rw = rw
		w.mu.Unlock()
		err = w.forward(ctx, rw)
		rw.Close()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = rw.Err()
		}
		if err == nil {
			err = errors.New("nvsprovider: the relay connection ended")
		}
		w.fail(err)
		return
	}
}

// fatal: the relay refused what we asked for; asking again changes nothing.
// Anything else (no socket yet, connection refused, the relay not yet
// connected to PostgreSQL) is worth another attempt.
func fatal(err error) bool {
	var se *nvsrelay.ServerError
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code {
	case nvsrelay.CodeHostUnreachable, nvsrelay.CodeExceededLimit, nvsrelay.CodeExceededMemoryLimit,
		nvsrelay.CodeExceededTimeLimit, 91, 11600:
		return false
	}
	return true
}

// forward hands the relay's events over until its channel closes (a fatal
// error; reconnects happen inside rw) or ctx ends.
func (w *Watcher) forward(ctx context.Context, rw *nvsrelay.Watcher) error {
	for {
		var ev nvsrelay.Event
		var ok bool
		select {
		case ev, ok = <-rw.Events():
			if !ok {
				return nil
			}
		case <-ctx.Done():
			return nil
		}
		m, err := Convert(ev.Raw)
		if err != nil {
			return err
		}
		id := changelogID(ev.Token)
		out := EventWithToken{Event: m, ResumeToken: []byte(id)}
		// Known before it is handed over, so the component may use its
		// token the moment it has the event.
		w.mu.Lock()
		if _, seen := w.tokens[id]; !seen {
			w.order = append(w.order, handed{id, ev.Token})
		}
		w.tokens[id] = ev.Token
		w.mu.Unlock()
		select {
		case w.dsEvents <- out:
		case w.clEvents <- &Event{data: m, token: out.ResumeToken}:
		case <-ctx.Done():
			return nil
		}
		w.mu.Lock()
		w.last = ev.Token
		if ct, ok := m["clusterTime"].(time.Time); ok && ct.After(w.lagRead) {
			w.lagRead = ct
		}
		if len(w.order) > 2*keepTokens {
			w.trimLocked()
		}
		w.mu.Unlock()
	}
}

// changelogID is the changelog row id inside a relay token (its last 16
// hex digits), in decimal: NVSentinel's _id._data and resume token.
func changelogID(tok string) string {
	if len(tok) != 40 {
		return tok
	}
	v, err := strconv.ParseUint(tok[24:], 16, 64)
	if err != nil {
		return tok
	}
	return strconv.FormatUint(v, 10)
}

// clientView is the client.ChangeStreamWatcher face of a Watcher.
type clientView struct{ w *Watcher }

func (c *clientView) Start(ctx context.Context)  { c.w.Start(ctx) }
func (c *clientView) Events() <-chan ClientEvent { return c.w.clEvents }
func (c *clientView) MarkProcessed(ctx context.Context, token []byte) error {
	return c.w.MarkProcessed(ctx, token)
}
func (c *clientView) Close(ctx context.Context) error { return c.w.Close(ctx) }
func (c *clientView) GetUnprocessedEventCount(ctx context.Context, lastProcessedID string) (int64, error) {
	return c.w.GetUnprocessedEventCount(ctx, lastProcessedID)
}
func (c *clientView) ResumeControlDecision() ResumeControlDecision { return c.w.opts.Decision }
func (c *clientView) LagState() (time.Time, time.Time)             { return c.w.LagState() }
