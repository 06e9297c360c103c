package nvsrelay

// Tests against a live nvsrelayd. tests/integ/80-go-client.t starts a
// throwaway PostgreSQL and the daemon and runs `go test` with:
//
//	NVSRELAY_TEST_SOCKET   the daemon's Unix socket
//	NVSRELAY_TEST_PSQL     psql, with PGHOST/PGPORT/PGUSER/PGDATABASE set, to write rows
//	NVSRELAY_TEST_PIDFILE  holds the daemon's pid; the .t restarts the daemon
//	                       whenever it exits, so a test may kill it
//	NVSRELAY_TEST_TCP      host:port of a TLS listener, with _CA, _CERT, _KEY
//	                       (optional: the TCP test skips without it)
//
// Without NVSRELAY_TEST_SOCKET every test skips. Each test writes rows with
// its own node-name prefix and looks only at those, so tests never see each
// other's changes as their own.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const waitFor = 20 * time.Second

func socketOrSkip(t *testing.T) string {
	t.Helper()
	s := os.Getenv("NVSRELAY_TEST_SOCKET")
	if s == "" {
		t.Skip("NVSRELAY_TEST_SOCKET not set: run through tests/integ/80-go-client.t")
	}
	return s
}

func psql(t *testing.T, sql string) string {
	t.Helper()
	bin := os.Getenv("NVSRELAY_TEST_PSQL")
	if bin == "" {
		t.Fatal("NVSRELAY_TEST_PSQL not set")
	}
	out, err := exec.Command(bin, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql).CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// insert writes a health event the way NVSentinel's store does (isFatal
// left out when false, as encoding/json's omitempty does) and returns its id.
func insert(t *testing.T, node string, fatal bool) string {
	t.Helper()
	he := map[string]interface{}{"nodeName": node, "checkName": "GpuXidError", "componentClass": "GPU",
		"agent": "gpu-health-monitor", "processingStrategy": 1}
	if fatal {
		he["isFatal"] = true
	}
	doc, _ := json.Marshal(map[string]interface{}{"healthevent": he,
		"healtheventstatus": map[string]interface{}{"nodequarantined": nil}})
	return psql(t, fmt.Sprintf("INSERT INTO health_events (node_name, event_type, severity, recommended_action, document) "+
		"VALUES ('%s', 'GpuXidError', 'GPU', 'NONE', '%s'::jsonb) RETURNING id", node, doc))
}

func insertN(t *testing.T, prefix string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = insert(t, fmt.Sprintf("%s-%d", prefix, i), false)
	}
	return ids
}

type got struct {
	ev   Event
	id   string
	node string
}

func describe(t *testing.T, ev Event) got {
	t.Helper()
	m, err := ev.Map()
	if err != nil {
		t.Fatalf("event is not a JSON object: %v: %s", err, ev.Raw)
	}
	g := got{ev: ev}
	if dk, ok := m["documentKey"].(map[string]interface{}); ok {
		g.id, _ = dk["_id"].(string)
	}
	if fd, ok := m["fullDocument"].(map[string]interface{}); ok {
		if he, ok := fd["healthevent"].(map[string]interface{}); ok {
			g.node, _ = he["nodeName"].(string)
		}
	}
	return g
}

// collect reads events of rows whose node name starts with prefix until n
// arrived; fails on a closed channel or after waitFor.
func collect(t *testing.T, w *Watcher, prefix string, n int) []got {
	t.Helper()
	var out []got
	deadline := time.After(waitFor)
	for len(out) < n {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				t.Fatalf("events closed after %d of %d: %v", len(out), n, w.Err())
			}
			if g := describe(t, ev); strings.HasPrefix(g.node, prefix+"-") {
				out = append(out, g)
			}
		case <-deadline:
			t.Fatalf("only %d of %d events within %v", len(out), n, waitFor)
		}
	}
	return out
}

// quiet checks that no further event of prefix arrives for a moment: a
// duplicate would come right behind the events just read.
func quiet(t *testing.T, w *Watcher, prefix string) {
	t.Helper()
	deadline := time.After(500 * time.Millisecond)
	for {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				t.Fatalf("events closed: %v", w.Err())
			}
			if g := describe(t, ev); strings.HasPrefix(g.node, prefix+"-") {
				t.Fatalf("unexpected extra event for %s (a duplicate?): %s", g.node, ev.Raw)
			}
		case <-deadline:
			return
		}
	}
}

func ids(gs []got) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.id
	}
	return out
}

func sameIDs(t *testing.T, what string, got []got, want []string) {
	t.Helper()
	if g := ids(got); strings.Join(g, ",") != strings.Join(want, ",") {
		t.Fatalf("%s: got ids %v, want %v", what, g, want)
	}
}

func uniq(name string) string {
	return name + strconv.FormatInt(time.Now().UnixNano()%1000000000, 36)
}

func dial(t *testing.T, o Options) *Watcher {
	t.Helper()
	if o.Socket == "" && o.Addr == "" {
		o.Socket = socketOrSkip(t)
	}
	o.MaxBackoff = 500 * time.Millisecond
	o.Logf = t.Logf
	w, err := Dial(context.Background(), o)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// dropConnection closes the watcher's connection under it, as a network
// failure would.
func (w *Watcher) dropConnection() {
	w.mu.Lock()
	s := w.cur
	w.mu.Unlock()
	if s != nil {
		s.conn.Close()
	}
}

func (w *Watcher) reconnectCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reconnects
}

func waitReconnects(t *testing.T, w *Watcher, n int) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for w.reconnectCount() < n {
		if time.Now().After(deadline) {
			t.Fatalf("no reconnect within %v", waitFor)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEvents(t *testing.T) {
	w := dial(t, Options{Table: "HealthEvents"})
	p := uniq("ev")
	want := insertN(t, p, 3)
	evs := collect(t, w, p, 3)
	sameIDs(t, "three inserts in commit order", evs, want)
	for i, g := range evs {
		if g.ev.OperationType != "insert" {
			t.Errorf("event %d: operationType %q", i, g.ev.OperationType)
		}
		if len(g.ev.Token) != 40 || !json.Valid(g.ev.Raw) {
			t.Errorf("event %d: token %q, raw valid %v", i, g.ev.Token, json.Valid(g.ev.Raw))
		}
		if i > 0 && g.ev.Token <= evs[i-1].ev.Token {
			t.Errorf("tokens out of order: %s then %s", evs[i-1].ev.Token, g.ev.Token)
		}
		var head struct {
			ID struct {
				Data string `json:"_data"`
			} `json:"_id"`
			NS struct {
				Coll string `json:"coll"`
			} `json:"ns"`
		}
		if err := g.ev.Decode(&head); err != nil || head.ID.Data != g.ev.Token || head.NS.Coll != "health_events" {
			t.Errorf("event %d: Decode %v, _id %q, coll %q", i, err, head.ID.Data, head.NS.Coll)
		}
	}
	// Without a consumer MarkProcessed only checks the token.
	if err := w.MarkProcessed(evs[2].ev.Token); err != nil {
		t.Errorf("MarkProcessed: %v", err)
	}
	if err := w.MarkProcessed("ffffffff" + strings.Repeat("0", 32)); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("MarkProcessed of a token never delivered: %v", err)
	}
	w.Close()
	if _, ok := <-w.Events(); ok {
		t.Error("events still open after Close")
	}
	if w.Err() != nil {
		t.Errorf("Err after Close: %v", w.Err())
	}
}

func TestReconnectResumesAfterLastDelivered(t *testing.T) {
	w := dial(t, Options{})
	p := uniq("rc")
	first := insertN(t, p, 2)
	sameIDs(t, "before the drop", collect(t, w, p, 2), first)
	w.dropConnection()
	waitReconnects(t, w, 1)
	more := insertN(t, p+"b", 2)
	sameIDs(t, "after the reconnect", collect(t, w, p+"b", 2), more)
	quiet(t, w, p)
}

func TestMarkProcessedDurable(t *testing.T) {
	consumer := uniq("go-durable-")
	w := dial(t, Options{Consumer: consumer})
	p := uniq("mp")
	ids4 := insertN(t, p, 4)
	evs := collect(t, w, p, 4)
	sameIDs(t, "four events", evs, ids4)
	if err := w.MarkProcessed(evs[1].ev.Token); err != nil {
		t.Fatalf("MarkProcessed: %v", err)
	}
	// An older token never moves the position back.
	if err := w.MarkProcessed(evs[0].ev.Token); err != nil {
		t.Fatalf("MarkProcessed: %v", err)
	}
	// What is not a token at all is refused here: the daemon would end
	// the subscription over it (280), closing the channel.
	for _, bad := range []string{"abc", "12", strings.ToUpper(evs[1].ev.Token), evs[1].ev.Token + "0"} {
		if err := w.MarkProcessed(bad); !errors.Is(err, ErrMalformedToken) {
			t.Errorf("MarkProcessed(%q) = %v, want ErrMalformedToken", bad, err)
		}
	}

	// The reconnect starts at the stored position (the 2nd event) and
	// passes over what was already delivered: nothing comes twice.
	w.dropConnection()
	waitReconnects(t, w, 1)
	fifth := insert(t, p+"-4", false)
	sameIDs(t, "after the reconnect only the new row", collect(t, w, p, 1), []string{fifth})
	quiet(t, w, p)
	w.Close()

	if stored := waitStored(t, consumer, evs[1].ev.Token); stored != evs[1].ev.Token {
		t.Fatalf("stored position %q, want the acknowledged %q", stored, evs[1].ev.Token)
	}

	// A new watcher for the consumer continues after the acknowledged
	// event: the unacknowledged ones again, then the new one.
	w2 := dial(t, Options{Consumer: consumer})
	again := collect(t, w2, p, 3)
	sameIDs(t, "resumed after the ack", again, append(ids4[2:], fifth))
	// Everything delivered is processed: an empty token says so.
	if err := w2.MarkProcessed(""); err != nil {
		t.Fatal(err)
	}
	w2.Close()
	last := again[2].ev.Token
	if stored := waitStored(t, consumer, last); stored < last {
		t.Fatalf("stored %q after MarkProcessed(\"\"), want at least %q", stored, last)
	}
}

// An event frame may be larger than the server's maxFrameBytes, which
// bounds what it reads: an update carries its document twice with the
// pre-image. 80-go-client.t sets max_frame_bytes to 1 MiB.
func TestEventOverMaxFrame(t *testing.T) {
	w := dial(t, Options{FullDocumentBeforeChange: "whenAvailable"})
	p := uniq("big")
	id := insert(t, p+"-0", false)
	psql(t, fmt.Sprintf("UPDATE health_events SET document = document || jsonb_build_object('pad', repeat('x', 700000))"+
		" WHERE id = '%s'", id))
	psql(t, fmt.Sprintf("UPDATE health_events SET document = document || '{\"v\": 2}' WHERE id = '%s'", id))
	evs := collect(t, w, p, 3)
	if n := len(evs[2].ev.Raw); n < 1<<20 {
		t.Fatalf("the last update's frame is %d bytes, want over 1 MiB", n)
	}
	w.Close()
}

// MarkProcessed("") acknowledges what the consumer took from the channel,
// not what still waits in its buffer.
func TestMarkProcessedEmptyOnlyTaken(t *testing.T) {
	consumer := uniq("go-taken-")
	w := dial(t, Options{Consumer: consumer, Buffer: 4})
	p := uniq("tk")
	insertN(t, p, 3)
	first := collect(t, w, p, 1)[0].ev.Token
	deadline := time.Now().Add(waitFor)
	for len(w.events) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(w.events); n != 2 {
		t.Fatalf("%d events in the buffer, want the other 2", n)
	}
	if err := w.MarkProcessed(""); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if stored := waitStored(t, consumer, first); stored != first {
		t.Fatalf("stored %q, want the taken event's %q", stored, first)
	}
}

// waitStored polls the consumer's stored position until it reaches want
// (positions are written a little after the acknowledgement) and returns it.
func waitStored(t *testing.T, consumer, want string) string {
	t.Helper()
	q := fmt.Sprintf("SELECT resume_token->>'token' FROM resume_tokens WHERE client_name = '%s'", consumer)
	deadline := time.Now().Add(waitFor)
	for {
		stored := psql(t, q)
		if stored >= want || time.Now().After(deadline) {
			return stored
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDaemonRestart(t *testing.T) {
	pidfile := os.Getenv("NVSRELAY_TEST_PIDFILE")
	if pidfile == "" {
		t.Skip("NVSRELAY_TEST_PIDFILE not set")
	}
	consumer := uniq("go-restart-")
	w := dial(t, Options{Consumer: consumer})
	p := uniq("rs")
	before := insertN(t, p, 2)
	evs := collect(t, w, p, 2)
	sameIDs(t, "before the restart", evs, before)
	if err := w.MarkProcessed(evs[1].ev.Token); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
	// Written while no daemon runs: the restarted one must deliver them.
	during := insertN(t, p+"d", 2)
	sameIDs(t, "written while the daemon was down", collect(t, w, p+"d", 2), during)
	after := insertN(t, p+"a", 1)
	sameIDs(t, "after the restart", collect(t, w, p+"a", 1), after)
	quiet(t, w, p)
	if w.reconnectCount() < 1 {
		t.Errorf("no reconnect counted")
	}
}

func TestPipeline(t *testing.T) {
	sock := socketOrSkip(t)
	match := []map[string]interface{}{{"$match": map[string]interface{}{
		"operationType":                    map[string]interface{}{"$in": []string{"insert"}},
		"fullDocument.healthevent.isfatal": true,
	}}}
	w, err := Dial(context.Background(), Options{Socket: sock, Pipeline: match})
	var se *ServerError
	if errors.As(err, &se) && strings.Contains(se.Message, "not supported") {
		t.Skipf("the daemon does not filter yet: %v", err)
	}
	if err != nil {
		t.Fatalf("Dial with a pipeline: %v", err)
	}
	defer w.Close()
	p := uniq("pl")
	start := time.Now()
	var fatal []string
	for i := 0; i < 4; i++ {
		id := insert(t, fmt.Sprintf("%s-%d", p, i), i%2 == 1)
		if i%2 == 1 {
			fatal = append(fatal, id)
		}
	}
	sameIDs(t, "only the fatal inserts", collect(t, w, p, 2), fatal)
	quiet(t, w, p)

	// The same pipeline as raw JSON text.
	raw := json.RawMessage(`[{"$match": {"fullDocument.healthevent.nodeName": "` + p + `-2"}}]`)
	w2 := dial(t, Options{Pipeline: raw, StartAtOperationTime: start})
	g := collect(t, w2, p, 1)
	if g[0].node != p+"-2" {
		t.Fatalf("raw pipeline matched %s", g[0].node)
	}

	// An unknown operator is refused at watch time, never ignored.
	_, err = Dial(context.Background(), Options{Socket: sock,
		Pipeline: json.RawMessage(`[{"$match": {"fullDocument.x": {"$regex": "a"}}}]`)})
	if !errors.As(err, &se) || se.Code == 0 {
		t.Fatalf("unknown operator: Dial returned %v, want a server error", err)
	}
	if _, err := Dial(context.Background(), Options{Socket: sock, Pipeline: map[string]int{"a": 1}}); err == nil ||
		errors.As(err, &se) {
		t.Fatalf("a pipeline that is not an array: %v, want a local error", err)
	}
}

func TestStartAtOperationTime(t *testing.T) {
	sock := socketOrSkip(t)
	// The stream starts at the last tick at or before the time, so a row
	// written just before it may come too (PROTOCOL.md); the rows after
	// it must all come, in order.
	p := uniq("sa")
	insertN(t, p+"o", 1)
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	time.Sleep(50 * time.Millisecond)
	want := insertN(t, p, 2)
	w, err := Dial(context.Background(), Options{Socket: sock, StartAtOperationTime: start})
	if err != nil {
		t.Fatalf("Dial with StartAtOperationTime: %v", err)
	}
	defer w.Close()
	sameIDs(t, "rows written after the start time", collect(t, w, p, 2), want)
}

func TestServerErrorClosesChannel(t *testing.T) {
	w := dial(t, Options{})
	w.mu.Lock()
	gen := w.lastPos[:8]
	w.mu.Unlock()
	w.Close()

	// Tick 0 is never in the history: the daemon confirms the watch,
	// then finds the position gone and says ChangeStreamHistoryLost.
	lost, err := Dial(context.Background(), Options{Socket: socketOrSkip(t), ResumeAfter: gen + strings.Repeat("0", 32)})
	var se *ServerError
	if err != nil {
		if errors.As(err, &se) && se.Code == CodeHistoryLost {
			t.Logf("refused at Dial: %v", err)
		} else {
			t.Fatalf("Dial: %v", err)
		}
	} else {
		defer lost.Close()
		select {
		case ev, ok := <-lost.Events():
			if ok {
				t.Fatalf("an event from a lost position: %s", ev.Raw)
			}
		case <-time.After(waitFor):
			t.Fatal("channel still open")
		}
		if !errors.As(lost.Err(), &se) || se.Code != CodeHistoryLost {
			t.Fatalf("Err() = %v, want ChangeStreamHistoryLost", lost.Err())
		}
	}

	// A foreign token is refused at once.
	_, err = Dial(context.Background(), Options{Socket: socketOrSkip(t), ResumeAfter: "not-a-token"})
	if !errors.As(err, &se) || se.Code != CodeChangeStreamFatal {
		t.Fatalf("bad token: %v, want ChangeStreamFatalError", err)
	}

	// A second watcher of the same consumer takes over; the first one's
	// channel closes with Interrupted rather than fighting back.
	consumer := uniq("go-fence-")
	first := dial(t, Options{Consumer: consumer})
	second := dial(t, Options{Consumer: consumer})
	select {
	case _, ok := <-first.Events():
		if ok {
			t.Fatal("the first watcher got an event instead of its error")
		}
	case <-time.After(waitFor):
		t.Fatal("the first watcher's channel is still open")
	}
	if !errors.As(first.Err(), &se) || se.Code != CodeInterrupted {
		t.Fatalf("first.Err() = %v, want Interrupted", first.Err())
	}
	p := uniq("fe")
	want := insertN(t, p, 1)
	sameIDs(t, "the second watcher carries on", collect(t, second, p, 1), want)
}

func TestContextCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := Dial(ctx, Options{Socket: socketOrSkip(t)})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case _, ok := <-w.Events():
		if ok {
			t.Fatal("event after cancel")
		}
	case <-time.After(waitFor):
		t.Fatal("channel open after cancel")
	}
	if !errors.Is(w.Err(), context.Canceled) {
		t.Fatalf("Err() = %v, want context.Canceled", w.Err())
	}
	w.Close()
}

func TestTCP(t *testing.T) {
	addr := os.Getenv("NVSRELAY_TEST_TCP")
	if addr == "" {
		t.Skip("NVSRELAY_TEST_TCP not set: no TCP listener configured")
	}
	pem, err := os.ReadFile(os.Getenv("NVSRELAY_TEST_TCP_CA"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if c := os.Getenv("NVSRELAY_TEST_TCP_CERT"); c != "" {
		cert, err := tls.LoadX509KeyPair(c, os.Getenv("NVSRELAY_TEST_TCP_KEY"))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	w := dial(t, Options{Addr: addr, TLS: cfg, Token: os.Getenv("NVSRELAY_TEST_TCP_TOKEN")})
	p := uniq("tc")
	want := insertN(t, p, 2)
	sameIDs(t, "over TLS", collect(t, w, p, 2), want)
}
