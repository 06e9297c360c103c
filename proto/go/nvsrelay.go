// Package nvsrelay is a Go client of nvsrelayd, the relay that gives NVIDIA
// NVSentinel MongoDB-style change streams on PostgreSQL. It speaks protocol
// v1 (proto/PROTOCOL.md in the nvsrelayd sources) over the daemon's Unix
// socket or its TCP listener, with the standard library only.
//
// A Watcher is one subscription:
//
//	w, err := nvsrelay.Dial(ctx, nvsrelay.Options{
//		Socket:   "/run/nvsrelayd/nvsrelayd.sock",
//		Table:    "HealthEvents",
//		Consumer: "node-drainer",
//		Pipeline: []map[string]interface{}{{"$match": map[string]interface{}{"operationType": "insert"}}},
//	})
//	if err != nil { ... }          // refused at once: bad pipeline, bad token, no daemon
//	defer w.Close()
//	for ev := range w.Events() {
//		handle(ev)
//		w.MarkProcessed(ev.Token)
//	}
//	// The channel closed: w.Err() says why (nil after Close).
//
// Connection loss is handled inside: the watcher reconnects with backoff and
// continues right after the last event it delivered, so the channel sees
// every change once, in order, across daemon restarts. A durable watcher
// (Consumer set) resumes from the position the daemon stored for it (the
// last acknowledged one) and passes over what it had already delivered, so
// a change that was delivered but not yet processed is never acknowledged
// by the reconnect itself.
//
// An error that reconnecting cannot cure closes the channel, and Err returns
// it as a *ServerError: ChangeStreamHistoryLost (286) when the position is
// older than the retained history, ChangeStreamFatalError (280) for a
// foreign token, a refused pipeline, Interrupted (11601) when another
// connection took the consumer over. NVSentinel's components treat a closed
// channel as fatal, and this is the behaviour they rely on.
package nvsrelay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"strconv"
	"sync"
	"time"
)

// Error codes the daemon sends (MongoDB's numbering).
const (
	CodeBadValue            = 2
	CodeHostUnreachable     = 6
	CodeUnauthorized        = 13
	CodeAuthFailed          = 18
	CodeExceededLimit       = 24
	CodeExceededMemoryLimit = 146
	CodeExceededTimeLimit   = 262
	CodeChangeStreamFatal   = 280
	CodeHistoryLost         = 286
	CodeInterrupted         = 11601
)

// sid is the one subscription a Watcher runs on its connection.
const sid = 1

// Options say where to connect and what to watch. Socket or Addr is required.
type Options struct {
	// Socket is the daemon's Unix socket path.
	Socket string
	// Addr is host:port of the daemon's TCP listener, used when Socket is
	// empty. TLS configures the TLS session (ServerName defaults to the
	// host); nil means plaintext, which the daemon allows only on loopback.
	Addr string
	TLS  *tls.Config
	// Token is the bearer token presented in hello, if the listener wants one.
	Token string
	// Client names the program in the daemon's logs (default "nvsrelay-go").
	Client string

	// Table is health_events (default) or maintenance_events; NVSentinel's
	// HealthEvents and MaintenanceEvents are accepted too.
	Table string
	// Consumer makes the subscription durable: the key of its position in
	// resume_tokens, moved by MarkProcessed.
	Consumer string
	// ResumeAfter starts after this token. StartAtOperationTime, when not
	// zero, starts at the first change written at or after it. With
	// neither, a durable watcher starts at its stored position, any other
	// at the head.
	ResumeAfter          string
	StartAtOperationTime time.Time
	// Pipeline holds $match stages: a json.RawMessage or []byte with a JSON
	// array, or any value encoding/json turns into one
	// ([]map[string]interface{}, ...).
	Pipeline interface{}
	// FullDocumentBeforeChange is "", "off", "whenAvailable" or "required".
	FullDocumentBeforeChange string

	// Buffer is the capacity of the Events channel (default 0).
	Buffer int
	// DialTimeout bounds one connection attempt including hello and watch
	// (default 10 s).
	DialTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnect attempts
	// (defaults 100 ms and 5 s; each wait is doubled and jittered).
	MinBackoff, MaxBackoff time.Duration
	// ReconnectFor gives up reconnecting after this long without a
	// connection, closing the channel with the last error (0: never).
	ReconnectFor time.Duration
	// Logf, when set, is told about reconnects.
	Logf func(format string, args ...interface{})
	// OnBookmark, when set, is called with each bookmark's token as it
	// arrives: every event before it has been put on Events. It runs on
	// the reading goroutine and must not block.
	OnBookmark func(token string)
}

// Event is one change.
type Event struct {
	// Raw is the event object exactly as the daemon sent it: _id,
	// operationType, clusterTime, ns, documentKey, fullDocument,
	// fullDocumentBeforeChange, updateDescription.
	Raw json.RawMessage
	// Token is _id._data, the position to acknowledge or resume after.
	Token string
	// OperationType is insert, update or delete.
	OperationType string
}

// Map decodes the event into a map, the shape NVSentinel's components use.
func (e Event) Map() (map[string]interface{}, error) {
	var m map[string]interface{}
	err := json.Unmarshal(e.Raw, &m)
	return m, err
}

// Decode decodes the event into v with encoding/json.
func (e Event) Decode(v interface{}) error {
	return json.Unmarshal(e.Raw, v)
}

// ServerError is an error frame from the daemon.
type ServerError struct {
	Code     int
	CodeName string
	Message  string
	// Token is the last position the subscription reached, if the
	// daemon said.
	Token string
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("nvsrelayd: %s (%d): %s", e.CodeName, e.Code, e.Message)
}

// transient reports whether reconnecting can cure err.
func transient(err error) bool {
	var se *ServerError
	if !errors.As(err, &se) {
		var pe *protocolError
		return !errors.As(err, &pe)
	}
	switch se.Code {
	case CodeHostUnreachable, // the daemon has not reached PostgreSQL yet
		CodeExceededLimit,       // too many clients right now
		CodeExceededMemoryLimit, // dropped as a slow consumer
		CodeExceededTimeLimit,
		91, 11600: // ShutdownInProgress, InterruptedAtShutdown
		return true
	}
	// Not Interrupted (11601) either: the daemon says so when another
	// subscription took the consumer over, and taking it back would
	// start a tug of war.
	return false
}

// protocolError is a frame this client cannot make sense of: a daemon bug
// or not a daemon at all, which reconnecting will not change.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return "nvsrelay: protocol error: " + e.msg }

// ErrUnknownToken is returned by MarkProcessed for a token the watcher has
// not delivered.
var ErrUnknownToken = errors.New("nvsrelay: MarkProcessed: token was not delivered by this watcher")

// ErrMalformedToken is returned by MarkProcessed for a string that is not a
// token at all. It is refused here because the daemon would answer it by
// ending the subscription (280).
var ErrMalformedToken = errors.New("nvsrelay: MarkProcessed: not a token (40 lower-case hex digits)")

// ValidToken reports whether s has the form of a token.
func ValidToken(s string) bool {
	if len(s) != 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Watcher is one subscription. Its methods are safe for concurrent use.
type Watcher struct {
	opts     Options
	watch    []byte // the first watch frame; reconnects build their own
	pipeline json.RawMessage
	events   chan Event
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	poke     chan struct{} // wakes the acknowledger
	closing  sync.Once

	mu           sync.Mutex
	err          error
	closed       bool
	cur          *session
	lastPos      string   // last event or bookmark token seen: where a resume starts
	lastEvent    string   // last event token handed to the channel
	handed       []string // the last tokens handed, at most cap(events)+1: which the consumer has
	lastBookmark string
	marked       string // highest token MarkProcessed was given
	reconnects   int
}

// maxServerFrame is the largest frame taken from the server once it said
// hello (the C library's bound too).
const maxServerFrame = 1 << 30

type session struct {
	conn     net.Conn
	br       *bufio.Reader
	maxFrame int
	wmu      sync.Mutex
	acked    string // highest token acknowledged on this connection
	mu       sync.Mutex
	seen     string // highest token received on this connection
}

// Dial connects, subscribes and waits until the daemon confirms the
// subscription. Errors the daemon sends for the watch itself (a bad
// pipeline, 286 for a position it no longer has, ...) come back here as a
// *ServerError. The watcher lives until Close or until ctx ends.
func Dial(ctx context.Context, opts Options) (*Watcher, error) {
	if opts.Socket == "" && opts.Addr == "" {
		return nil, errors.New("nvsrelay: Options needs Socket or Addr")
	}
	if opts.Client == "" {
		opts.Client = "nvsrelay-go"
	}
	if opts.Table == "" {
		opts.Table = "health_events"
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 10 * time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = 5 * time.Second
		if opts.MaxBackoff < opts.MinBackoff {
			opts.MaxBackoff = opts.MinBackoff
		}
	}
	if opts.Buffer < 0 {
		opts.Buffer = 0
	}
	w := &Watcher{
		opts:   opts,
		events: make(chan Event, opts.Buffer),
		done:   make(chan struct{}),
		poke:   make(chan struct{}, 1),
	}
	if opts.Pipeline != nil {
		p, err := encodePipeline(opts.Pipeline)
		if err != nil {
			return nil, err
		}
		w.pipeline = p
	}
	w.ctx, w.cancel = context.WithCancel(ctx)
	s, err := w.connect(true)
	if err != nil {
		w.cancel()
		return nil, err
	}
	go w.run(s)
	return w, nil
}

func encodePipeline(p interface{}) (json.RawMessage, error) {
	var raw []byte
	switch v := p.(type) {
	case json.RawMessage:
		raw = v
	case []byte:
		raw = v
	default:
		b, err := json.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("nvsrelay: Pipeline: %w", err)
		}
		raw = b
	}
	var stages []json.RawMessage
	if err := json.Unmarshal(raw, &stages); err != nil {
		return nil, errors.New("nvsrelay: Pipeline must be a JSON array of stages")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, fmt.Errorf("nvsrelay: Pipeline: %w", err)
	}
	return buf.Bytes(), nil
}

// Events delivers the changes in order. It is closed when the watcher ends:
// after Close, when ctx ends, or on an error reconnecting cannot cure.
func (w *Watcher) Events() <-chan Event { return w.events }

// Err says why Events was closed: nil after Close, the context's error
// when ctx ended, else the fatal error (often a *ServerError). Before the
// channel is closed it returns nil.
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// MarkProcessed acknowledges everything up to and including token
// (cumulative); the daemon stores it as the consumer's position, so a
// restart resumes after it. An empty token means everything delivered so
// far. Without a Consumer nothing is stored and only the token is checked.
// Acknowledgements are sent in the background, newest first; one still
// pending when the watcher closes is sent before the connection goes.
func (w *Watcher) MarkProcessed(token string) error {
	w.mu.Lock()
	if token == "" {
		token = w.received()
	}
	if token == "" {
		w.mu.Unlock()
		return nil
	}
	if !ValidToken(token) {
		w.mu.Unlock()
		return ErrMalformedToken
	}
	if token > w.lastPos {
		w.mu.Unlock()
		return ErrUnknownToken
	}
	if token > w.marked {
		w.marked = token
	}
	w.mu.Unlock()
	w.wake()
	return nil
}

// Position is the last position the watcher reached: its last event or
// bookmark ("" before the first).
func (w *Watcher) Position() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastPos
}

// Close ends the watcher and waits until its goroutines are gone. The
// Events channel is closed; Err returns nil afterwards.
func (w *Watcher) Close() error {
	w.closing.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		w.cancel()
	})
	<-w.done
	return nil
}

func (w *Watcher) wake() {
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

func (w *Watcher) logf(format string, args ...interface{}) {
	if w.opts.Logf != nil {
		w.opts.Logf(format, args...)
	}
}

// --- connecting ----------------------------------------------------------

func (w *Watcher) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{}
	if w.opts.Socket != "" {
		return d.DialContext(ctx, "unix", w.opts.Socket)
	}
	c, err := d.DialContext(ctx, "tcp", w.opts.Addr)
	if err != nil || w.opts.TLS == nil {
		return c, err
	}
	cfg := w.opts.TLS.Clone()
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(w.opts.Addr); err == nil {
			cfg.ServerName = host
		}
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// longAgo as a deadline makes blocked reads and writes return at once.
var longAgo = time.Unix(1, 0)

// interruptOn makes blocking I/O on conn return once ctx ends. The returned
// function stops that and must be called before conn is used further.
func interruptOn(ctx context.Context, conn net.Conn) (stop func()) {
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-ctx.Done():
			conn.SetDeadline(longAgo)
		case <-done:
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}

type tokenObj struct {
	Data string `json:"_data"`
}

type frame struct {
	Op       string          `json:"op"`
	Sid      *int64          `json:"sid"`
	Event    json.RawMessage `json:"event"`
	Token    *tokenObj       `json:"token"`
	Code     int             `json:"code"`
	CodeName string          `json:"codeName"`
	Message  string          `json:"message"`
	MaxFrame int             `json:"maxFrameBytes"`
	Count    *int64          `json:"count"`
}

func (f *frame) mine() bool { return f.Sid == nil || *f.Sid == sid }

func (f *frame) serverError() *ServerError {
	e := &ServerError{Code: f.Code, CodeName: f.CodeName, Message: f.Message}
	if f.Token != nil {
		e.Token = f.Token.Data
	}
	return e
}

// watchFrame builds the watch: the caller's start options the first time;
// on a reconnect, the consumer's stored position when durable, else right
// after the last position seen.
func (w *Watcher) watchFrame(first bool, resume string) ([]byte, error) {
	m := map[string]interface{}{"op": "watch", "sid": sid, "table": w.opts.Table}
	if w.opts.Consumer != "" {
		m["consumer"] = w.opts.Consumer
	}
	if first || (w.opts.Consumer == "" && resume == "") {
		if w.opts.ResumeAfter != "" {
			m["resumeAfter"] = tokenObj{w.opts.ResumeAfter}
		}
		if !w.opts.StartAtOperationTime.IsZero() {
			m["startAtOperationTime"] = w.opts.StartAtOperationTime.UTC().Format(time.RFC3339Nano)
		}
	} else if w.opts.Consumer == "" {
		m["resumeAfter"] = tokenObj{resume}
	}
	if w.pipeline != nil {
		m["pipeline"] = w.pipeline
	}
	if w.opts.FullDocumentBeforeChange != "" {
		m["fullDocumentBeforeChange"] = w.opts.FullDocumentBeforeChange
	}
	b, err := json.Marshal(m)
	return append(b, '\n'), err
}

// connect opens a connection, says hello, subscribes and waits for the
// first bookmark.
func (w *Watcher) connect(first bool) (s *session, err error) {
	ctx, cancel := context.WithTimeout(w.ctx, w.opts.DialTimeout)
	defer cancel()
	conn, err := w.dial(ctx)
	if err != nil {
		return nil, err
	}
	s = &session{conn: conn, br: bufio.NewReaderSize(conn, 64<<10), maxFrame: 16 << 20}
	defer func() {
		if err != nil {
			conn.Close()
		}
	}()
	stop := interruptOn(ctx, conn)
	err = w.handshake(s, first)
	stop()
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		if ctx.Err() != nil && w.ctx.Err() == nil {
			err = fmt.Errorf("nvsrelay: no answer within %v: %w", w.opts.DialTimeout, err)
		}
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return s, nil
}

func (w *Watcher) handshake(s *session, first bool) error {
	hello := map[string]interface{}{"op": "hello", "v": 1, "client": w.opts.Client}
	if w.opts.Token != "" {
		hello["token"] = w.opts.Token
	}
	b, _ := json.Marshal(hello)
	if err := s.send(append(b, '\n')); err != nil {
		return err
	}
	f, err := s.next()
	if err != nil {
		return err
	}
	switch f.Op {
	case "hello":
		// maxFrameBytes bounds what the server reads; its events carry
		// their documents whole (an update with its pre-image, twice),
		// so they are bounded as the C library bounds them.
		s.maxFrame = maxServerFrame
	case "error":
		return f.serverError()
	default:
		return &protocolError{"expected hello, got " + strconv.Quote(f.Op)}
	}
	w.mu.Lock()
	resume := w.lastPos
	w.mu.Unlock()
	b, err = w.watchFrame(first, resume)
	if err != nil {
		return err
	}
	if err := s.send(b); err != nil {
		return err
	}
	for {
		f, err := s.next()
		if err != nil {
			return err
		}
		switch {
		case f.Op == "error" && f.mine():
			return f.serverError()
		case f.Op == "bookmark" && f.mine():
			if f.Token == nil || f.Token.Data == "" {
				return &protocolError{"bookmark without a token"}
			}
			s.saw(f.Token.Data)
			w.mu.Lock()
			if w.lastPos == "" {
				w.lastPos = f.Token.Data
			}
			w.mu.Unlock()
			return nil
		case f.Op == "event" && f.mine():
			return &protocolError{"event before the watch was confirmed"}
		}
	}
}

// --- the session ---------------------------------------------------------

func (s *session) send(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.conn.Write(b)
	return err
}

func (s *session) saw(token string) {
	s.mu.Lock()
	if token > s.seen {
		s.seen = token
	}
	s.mu.Unlock()
}

func (s *session) seenToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen
}

// next reads one frame; empty lines are skipped.
func (s *session) next() (*frame, error) {
	var long []byte
	for {
		chunk, err := s.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long, chunk...)
			if len(long) > s.maxFrame {
				return nil, &protocolError{"frame larger than " + strconv.Itoa(s.maxFrame) + " bytes"}
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if long != nil {
			chunk = append(long, chunk...)
			long = nil
		}
		line := bytes.TrimSuffix(bytes.TrimSuffix(chunk, []byte("\n")), []byte("\r"))
		if len(line) == 0 {
			continue
		}
		f := new(frame)
		if err := json.Unmarshal(line, f); err != nil || f.Op == "" {
			return nil, &protocolError{"not a frame: " + strconv.Quote(string(truncate(line, 80)))}
		}
		return f, nil
	}
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// --- running ---------------------------------------------------------------

func (w *Watcher) setCur(s *session) {
	w.mu.Lock()
	w.cur = s
	w.mu.Unlock()
}

func (w *Watcher) run(s *session) {
	defer close(w.done)
	defer close(w.events)
	for {
		w.setCur(s)
		err := w.serve(s)
		w.finish(s)
		if w.ctx.Err() != nil {
			w.end(nil)
			return
		}
		if !transient(err) {
			w.end(err)
			return
		}
		w.logf("nvsrelay: connection lost (%v); reconnecting", err)
		if s = w.reconnect(err); s == nil {
			return
		}
	}
}

// end records why the channel closes: nil after Close, the context's
// error when the caller's context ended, else err.
func (w *Watcher) end(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.closed:
		w.err = nil
	case w.ctx.Err() != nil:
		w.err = w.ctx.Err()
	default:
		w.err = err
	}
}

func (w *Watcher) reconnect(last error) *session {
	backoff := w.opts.MinBackoff
	start := time.Now()
	for {
		// Jitter spreads the reconnects of many clients after a restart.
		wait := backoff/2 + time.Duration(rand.Int63n(int64(backoff)))
		t := time.NewTimer(wait)
		select {
		case <-w.ctx.Done():
			t.Stop()
			w.end(nil)
			return nil
		case <-t.C:
		}
		s, err := w.connect(false)
		if err == nil {
			w.mu.Lock()
			w.reconnects++
			w.mu.Unlock()
			w.logf("nvsrelay: reconnected")
			return s
		}
		if w.ctx.Err() != nil {
			w.end(nil)
			return nil
		}
		if !transient(err) {
			w.end(err)
			return nil
		}
		last = err
		if w.opts.ReconnectFor > 0 && time.Since(start) > w.opts.ReconnectFor {
			w.end(fmt.Errorf("nvsrelay: no connection for %v: %w", w.opts.ReconnectFor, last))
			return nil
		}
		w.logf("nvsrelay: reconnect failed (%v)", err)
		if backoff *= 2; backoff > w.opts.MaxBackoff {
			backoff = w.opts.MaxBackoff
		}
	}
}

// serve reads frames until the connection fails, the daemon sends an error
// for the subscription, or the watcher ends.
func (w *Watcher) serve(s *session) error {
	stop := interruptOn(w.ctx, s.conn)
	defer stop()
	ackDone, ackExited := make(chan struct{}), make(chan struct{})
	go w.acknowledge(s, ackDone, ackExited)
	defer func() {
		close(ackDone)
		<-ackExited
	}()
	for {
		f, err := s.next()
		if err != nil {
			return err
		}
		if !f.mine() {
			continue
		}
		switch f.Op {
		case "event":
			ev, err := parseEvent(f.Event)
			if err != nil {
				return err
			}
			s.saw(ev.Token)
			w.mu.Lock()
			// A durable reconnect starts at the stored position:
			// what was delivered since is passed over.
			old := ev.Token <= w.lastPos
			if !old {
				w.lastPos = ev.Token
			}
			w.mu.Unlock()
			if old {
				w.wake()
				continue
			}
			select {
			case w.events <- ev:
			case <-w.ctx.Done():
				return w.ctx.Err()
			}
			// Only now is it the consumer's (or in the channel's
			// buffer): before, MarkProcessed("") and the bookmark rule
			// in ackTarget took an event still on its way for done.
			w.mu.Lock()
			w.lastEvent = ev.Token
			w.handed = append(w.handed, ev.Token)
			if over := len(w.handed) - (cap(w.events) + 1); over > 0 {
				w.handed = append(w.handed[:0], w.handed[over:]...)
			}
			w.mu.Unlock()
		case "bookmark":
			if f.Token == nil || f.Token.Data == "" {
				return &protocolError{"bookmark without a token"}
			}
			s.saw(f.Token.Data)
			w.mu.Lock()
			if f.Token.Data > w.lastPos {
				w.lastPos = f.Token.Data
			}
			if f.Token.Data > w.lastBookmark {
				w.lastBookmark = f.Token.Data
			}
			w.mu.Unlock()
			w.wake()
			if w.opts.OnBookmark != nil {
				w.opts.OnBookmark(f.Token.Data)
			}
		case "error":
			return f.serverError()
		}
	}
}

// received is the token of the last event the consumer took from the
// channel ("" when none): the newest handed over, less those still in the
// buffer. The buffer only empties meanwhile, so it is never too far.
// Called with w.mu held.
func (w *Watcher) received() string {
	i := len(w.handed) - 1 - len(w.events)
	if i < 0 {
		return ""
	}
	return w.handed[i]
}

func parseEvent(raw json.RawMessage) (Event, error) {
	var head struct {
		ID            tokenObj `json:"_id"`
		OperationType string   `json:"operationType"`
	}
	if err := json.Unmarshal(raw, &head); err != nil || head.ID.Data == "" || head.OperationType == "" {
		return Event{}, &protocolError{"event without _id._data or operationType"}
	}
	return Event{Raw: raw, Token: head.ID.Data, OperationType: head.OperationType}, nil
}

// ackTarget is what may be acknowledged on s: the highest token marked
// processed, or the last bookmark once every delivered event is marked
// (that moves a durable position through stretches the pipeline filters
// out). Never beyond what s received: the daemon refuses to have a position
// acknowledged that it has not sent on that connection.
func (w *Watcher) ackTarget(s *session) string {
	w.mu.Lock()
	t := w.marked
	if w.lastBookmark > t && w.marked >= w.lastEvent {
		t = w.lastBookmark
	}
	w.mu.Unlock()
	if seen := s.seenToken(); t > seen {
		t = seen
	}
	return t
}

func (w *Watcher) sendAck(s *session) error {
	t := w.ackTarget(s)
	if t == "" || t <= s.acked {
		return nil
	}
	b, _ := json.Marshal(map[string]interface{}{"op": "ack", "sid": sid, "token": tokenObj{t}})
	if err := s.send(append(b, '\n')); err != nil {
		return err
	}
	s.acked = t
	return nil
}

// acknowledge sends acknowledgements while s serves. Only durable
// subscriptions have a position to move.
func (w *Watcher) acknowledge(s *session, done, exited chan struct{}) {
	defer close(exited)
	if w.opts.Consumer == "" {
		return
	}
	for {
		if err := w.sendAck(s); err != nil {
			return
		}
		select {
		case <-w.poke:
		case <-done:
			return
		}
	}
}

// finish closes a session; on the way out it first sends the last
// acknowledgement, so Close never loses a MarkProcessed.
func (w *Watcher) finish(s *session) {
	w.setCur(nil)
	if w.ctx.Err() != nil && w.opts.Consumer != "" {
		s.conn.SetDeadline(time.Now().Add(2 * time.Second))
		if w.sendAck(s) == nil {
			leave(s)
		}
	}
	s.conn.Close()
}

// leave ends the subscription and waits (bounded by the connection's
// deadline) until the daemon has read everything before: a watcher for the
// same consumer opened right after Close, as a restarting component does,
// then starts after the last acknowledgement rather than racing it.
func leave(s *session) {
	if s.send([]byte(fmt.Sprintf(`{"op":"unwatch","sid":%d}`+"\n", sid))) != nil ||
		s.send([]byte(`{"op":"ping"}`+"\n")) != nil {
		return
	}
	for {
		f, err := s.next()
		var pe *protocolError
		if errors.As(err, &pe) {
			continue // the rest of a frame cut short when Close interrupted the read
		}
		if err != nil || f.Op == "pong" {
			return
		}
	}
}

// Count asks the daemon how many changes of table lie after the position
// after (protocol op "count"), on a connection of its own that is closed
// before it returns. The figure is the one PROTOCOL.md describes: rows
// after the position's changelog id, without the pipeline, capped at one
// million. Socket or Addr, TLS, Token, Client and DialTimeout of opts are
// used.
func Count(ctx context.Context, opts Options, table, after string) (int64, error) {
	if opts.Socket == "" && opts.Addr == "" {
		return 0, errors.New("nvsrelay: Options needs Socket or Addr")
	}
	if !ValidToken(after) {
		return 0, ErrMalformedToken
	}
	if table == "" {
		table = "health_events"
	}
	if opts.Client == "" {
		opts.Client = "nvsrelay-go"
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()
	w := &Watcher{opts: opts}
	conn, err := w.dial(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	stop := interruptOn(ctx, conn)
	defer stop()
	s := &session{conn: conn, br: bufio.NewReaderSize(conn, 4096), maxFrame: 1 << 20}
	hello := map[string]interface{}{"op": "hello", "v": 1, "client": opts.Client}
	if opts.Token != "" {
		hello["token"] = opts.Token
	}
	req := map[string]interface{}{"op": "count", "table": table, "after": tokenObj{after}}
	for _, m := range []map[string]interface{}{hello, req} {
		b, _ := json.Marshal(m)
		if err := s.send(append(b, '\n')); err != nil {
			return 0, err
		}
	}
	for {
		f, err := s.next()
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, err
		}
		switch f.Op {
		case "error":
			return 0, f.serverError()
		case "count":
			if f.Count == nil {
				return 0, &protocolError{"count answer without a count"}
			}
			return *f.Count, nil
		}
	}
}
