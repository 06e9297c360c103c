package nvsprovider

// Tests against a live nvsrelayd over TLS and PostgreSQL.
// tests/integ/84-go-provider.t starts both and runs `go test` here with:
//
//	NVSRELAY_TEST_TCP        host:port of the daemon's TLS listener, with
//	NVSRELAY_TEST_TCP_CA     _CA, _CERT, _KEY for mutual TLS
//	NVSRELAY_TEST_PSQL       psql, with PGHOST/PGPORT/PGUSER/PGDATABASE set
//	NVSRELAY_TEST_PIDFILE    the daemon's pid; the .t restarts the daemon
//	                         whenever it exits
//	NVSRELAY_TEST_PG_RESTART a shell command that restarts PostgreSQL
//
// Without them these tests skip.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"nvsrelay.local/nvsrelay"
)

const waitFor = 60 * time.Second

func relayOrSkip(t *testing.T) Options {
	t.Helper()
	addr := os.Getenv("NVSRELAY_TEST_TCP")
	if addr == "" || os.Getenv("NVSRELAY_TEST_PSQL") == "" {
		t.Skip("NVSRELAY_TEST_TCP or NVSRELAY_TEST_PSQL not set: run through tests/integ/84-go-provider.t")
	}
	pem, err := os.ReadFile(os.Getenv("NVSRELAY_TEST_TCP_CA"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	cert, err := tls.LoadX509KeyPair(os.Getenv("NVSRELAY_TEST_TCP_CERT"), os.Getenv("NVSRELAY_TEST_TCP_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Certificates = []tls.Certificate{cert}
	return Options{Addr: addr, TLS: cfg, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}
}

func psql(t *testing.T, sql string) (string, error) {
	out, err := exec.Command(os.Getenv("NVSRELAY_TEST_PSQL"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("psql: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

func mustPsql(t *testing.T, sql string) string {
	t.Helper()
	out, err := psql(t, sql)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func uniq(p string) string {
	return fmt.Sprintf("%s%d-%d", p, time.Now().UnixNano()%1e9, rand.Intn(1000))
}

func newWatcher(t *testing.T, o Options, name string, pipeline interface{}) *Watcher {
	t.Helper()
	o.ClientName = name
	o.Pipeline = pipeline
	o.Logf = t.Logf
	w, err := New(o)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	return w
}

// --- the change writer -------------------------------------------------

// change is one committed change: its changelog id and what it was.
type change struct {
	id   string
	what string
}

type writer struct {
	t       *testing.T
	changes []change
}

// exec runs statements in one transaction and records the changelog row
// the last of them wrote (nothing else writes while the scenario runs).
// While PostgreSQL restarts it retries: a failed attempt committed nothing.
func (wr *writer) exec(what, sql string) string {
	wr.t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		out, err := psql(wr.t, sql+"; SELECT record_id::text || ' ' || id FROM datastore_changelog ORDER BY id DESC LIMIT 1")
		if err == nil {
			f := strings.Fields(out)
			if len(f) != 2 {
				wr.t.Fatalf("writer: unexpected output %q", out)
			}
			wr.changes = append(wr.changes, change{id: f[1], what: what})
			return f[0]
		}
		if time.Now().After(deadline) {
			wr.t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func healthDoc(node string, strategy int, healthy bool, agent string) string {
	he := fmt.Sprintf(`"nodeName":%q,"agent":%q,"checkName":"GpuXidError","componentClass":"GPU","errorCode":["79"]`, node, agent)
	if strategy != 0 {
		he += fmt.Sprintf(`,"processingStrategy":%d`, strategy)
	}
	if healthy {
		he += `,"isHealthy":true`
	}
	return fmt.Sprintf(`{"createdAt":"2026-11-25T10:00:00Z","healthevent":{%s},"healtheventstatus":{"nodequarantined":null,`+
		`"userpodsevictionstatus":{"status":""},"faultremediated":null,"spanids":{"platform-connector":"s"}}}`, he)
}

func (wr *writer) insert(what, node string, strategy int, healthy bool, agent string) string {
	return wr.exec(what, fmt.Sprintf("INSERT INTO health_events (node_name, event_type, severity, recommended_action, document)"+
		" VALUES (%s, 'GpuXidError', 'GPU', 'NONE', '%s'::jsonb)", sqlQuote(node), healthDoc(node, strategy, healthy, agent)))
}

// update changes the document as NVSentinel's status writers do, with
// nested jsonb_set (expr is applied to "document").
func (wr *writer) update(what, id, expr string) {
	wr.exec(what, fmt.Sprintf("UPDATE health_events SET document = %s, updated_at = now() WHERE id = '%s'", expr, id))
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func sqlQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// round writes one of each kind of change; the comments say which
// component's production pipeline selects it.
func (wr *writer) round(tag string) {
	a := wr.insert("insert processable "+tag, tag+"-a", 1, false, "gpu-health-monitor")    // FQ, HEA, exporter
	b := wr.insert("insert store-only "+tag, tag+"-b", 2, false, "gpu-health-monitor")     // exporter
	wr.insert("insert healthy, no strategy "+tag, tag+"-c", 0, true, "gpu-health-monitor") // FQ, exporter
	wr.insert("insert by the analyzer "+tag, tag+"-d", 3, false, "health-events-analyzer") // exporter
	wr.update("quarantine "+tag, a, `jsonb_set(jsonb_set(document, '{healtheventstatus,nodequarantined}', '"Quarantined"'),`+
		` '{healtheventstatus,spanids,fault-quarantine}', '"fq"')`) // ND, HEA
	wr.update("drained "+tag, a, `jsonb_set(document, '{healtheventstatus,userpodsevictionstatus,status}', '"Succeeded"')`) // FR, HEA
	wr.update("remediated "+tag, a, `jsonb_set(document, '{healtheventstatus,faultremediated}', '{"value":true}')`)         // HEA
	wr.update("unquarantine "+tag, a, `jsonb_set(document, '{healtheventstatus,nodequarantined}', '"UnQuarantined"')`)      // ND, HEA
	wr.exec("delete "+tag, fmt.Sprintf("DELETE FROM health_events WHERE id = '%s'", b))                                     // none
	wr.exec("maintenance "+tag, fmt.Sprintf("INSERT INTO maintenance_events (event_id, csp, cluster_name, node_name, status, event_received_timestamp, document)"+
		" VALUES (%s, 'gcp', 'c', %s, 'DETECTED', now(), '{\"status\":\"DETECTED\"}'::jsonb)", sqlQuote(tag+"-m"), sqlQuote(tag))) // none
}

// matching: the changes a component's pipeline selects, by description.
func matching(all []change, kinds ...string) []string {
	var out []string
	for _, c := range all {
		for _, k := range kinds {
			if strings.HasPrefix(c.what, k+" ") {
				out = append(out, c.id)
				break
			}
		}
	}
	return out
}

// --- components --------------------------------------------------------

// recorder keeps what a component was handed, in order.
type recorder struct {
	mu  sync.Mutex
	ids []string
	err error
}

func (r *recorder) add(id string) {
	r.mu.Lock()
	r.ids = append(r.ids, id)
	r.mu.Unlock()
}

func (r *recorder) fail(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
}

func (r *recorder) snapshot() ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...), r.err
}

// connected waits until the watcher has a subscription (Start returns
// after the first attempt, which a slow relay may not have answered).
func connected(t *testing.T, w *Watcher) {
	deadline := time.Now().Add(waitFor)
	for {
		w.mu.Lock()
		ok := w.rw != nil
		w.mu.Unlock()
		if ok || time.Now().After(deadline) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type component struct {
	name     string
	pipeline interface{}
	kinds    []string
	// run drives the provider the way the component does until ctx ends.
	run func(ctx context.Context, t *testing.T, o Options, rec *recorder, ready func())
	rec recorder
	// wantIDs: what it should have been handed.
	wantIDs []string
	// dup: the ids expected twice (redelivered after a stop).
	dup func(want []string) []string
}

// fault-quarantine: Unwrap, then every event is marked processed, also
// when handling it failed; a failed MarkProcessed stops the pod.
func runFaultQuarantine(ctx context.Context, t *testing.T, o Options, rec *recorder, ready func()) {
	w := newWatcher(t, o, "fault-quarantine", production["ProcessableHealthEventInserts"])
	cw := w.Unwrap()
	cw.Start(ctx)
	connected(t, w)
	ready()
	defer cw.Close(context.Background())
	// Foreign and malformed positions are refused; the stream goes on.
	for _, bad := range []string{"abc", "12", "1eaa650c00000000000000050000000000000088", "-1"} {
		if err := cw.MarkProcessed(ctx, []byte(bad)); !errors.Is(err, ErrUnknownToken) {
			rec.fail(fmt.Errorf("MarkProcessed(%q) = %v, want ErrUnknownToken", bad, err))
		}
	}
	n := 0
	for ev := range cw.Events() {
		var doc struct {
			HealthEvent struct {
				NodeName string `json:"nodeName"`
			} `json:"healthevent"`
		}
		id, err1 := ev.GetDocumentID()
		_, err2 := ev.GetRecordUUID()
		err3 := ev.UnmarshalDocument(&doc)
		if err := firstErr(err1, err2, err3); err != nil || doc.HealthEvent.NodeName == "" {
			rec.fail(fmt.Errorf("fault-quarantine could not read an event: %v", err))
		}
		rec.add(id)
		if n++; n%3 == 0 {
			t.Logf("fault-quarantine: handling event %s failed (simulated); marking it processed anyway", id)
		}
		if err := cw.MarkProcessed(ctx, ev.GetResumeToken()); err != nil {
			rec.fail(fmt.Errorf("MarkProcessed: %v", err))
			return
		}
	}
	if ctx.Err() == nil {
		rec.fail(fmt.Errorf("fault-quarantine: channel closed: %v", w.Err()))
	}
}

// node-drainer: Unwrap; marks processed only after preprocessing succeeded,
// logs a failure and goes on without marking.
func runNodeDrainer(ctx context.Context, t *testing.T, o Options, rec *recorder, ready func()) {
	w := newWatcher(t, o, "node-drainer", production["NodeQuarantineStatus"])
	cw := w.Unwrap()
	cw.Start(ctx)
	connected(t, w)
	ready()
	defer cw.Close(context.Background())
	n := 0
	for ev := range cw.Events() {
		id, _ := ev.GetDocumentID()
		rec.add(id)
		if _, err := ev.GetNodeName(); err != nil {
			rec.fail(fmt.Errorf("node-drainer: GetNodeName: %v", err))
		}
		if n++; n%2 == 0 {
			t.Logf("node-drainer: preprocessing %s failed (simulated); not marking it", id)
			continue
		}
		if err := cw.MarkProcessed(ctx, ev.GetResumeToken()); err != nil {
			rec.fail(fmt.Errorf("node-drainer MarkProcessed: %v", err))
			return
		}
	}
	if ctx.Err() == nil {
		rec.fail(fmt.Errorf("node-drainer: channel closed (critical): %v", w.Err()))
	}
}

// fault-remediation: the datastore view's maps; a work queue marks events
// processed after reconciling them, skipping empty tokens, not always in
// order (here every pair is acknowledged newer first).
func runFaultRemediation(ctx context.Context, t *testing.T, o Options, rec *recorder, ready func()) {
	w := newWatcher(t, o, "fault-remediation", production["QuarantinedAndDrainedNodes"])
	w.Start(ctx)
	connected(t, w)
	ready()
	defer w.Close(context.Background())
	safeMark := func(tok []byte) {
		if len(tok) == 0 {
			return
		}
		if err := w.MarkProcessed(ctx, tok); err != nil {
			rec.fail(fmt.Errorf("fault-remediation MarkProcessed(%s): %v", tok, err))
		}
	}
	var held []byte
	for {
		var ev EventWithToken
		var ok bool
		select {
		case ev, ok = <-w.Events():
		case <-time.After(300 * time.Millisecond):
			safeMark(held) // the queue drains when idle
			held = nil
			continue
		}
		if !ok {
			break
		}
		id, _ := ev.Event["_id"].(map[string]interface{})["_data"].(string)
		fd, _ := ev.Event["fullDocument"].(map[string]interface{})
		if id != string(ev.ResumeToken) || fd == nil || ev.Event["operationType"] != "update" {
			rec.fail(fmt.Errorf("fault-remediation: unexpected event %v", ev.Event))
		}
		rec.add(id)
		if held == nil {
			held = ev.ResumeToken
			continue
		}
		safeMark(ev.ResumeToken)
		safeMark(held) // older than what was just acknowledged: a no-op
		held = nil
	}
	if ctx.Err() == nil {
		rec.fail(fmt.Errorf("fault-remediation: channel closed: %v", w.Err()))
	}
}

// health-events-analyzer: Unwrap into an event processor with
// MarkProcessedOnError false: a failed event is not marked and the
// processor stops; the pod restarts and the event comes again.
func runAnalyzer(ctx context.Context, t *testing.T, o Options, rec *recorder, ready func()) {
	n := 0
	for ctx.Err() == nil {
		w := newWatcher(t, o, "health-events-analyzer", production["ProcessableNonFatalUnhealthyInserts"])
		cw := w.Unwrap()
		cw.Start(ctx)
		connected(t, w)
		if n == 0 {
			ready()
		}
		stopped := false
		for ev := range cw.Events() {
			id, _ := ev.GetDocumentID()
			rec.add(id)
			if n++; n == 3 {
				t.Logf("health-events-analyzer: handler failed on %s; the processor stops, the pod restarts", id)
				stopped = true
				break
			}
			if err := cw.MarkProcessed(ctx, ev.GetResumeToken()); err != nil {
				rec.fail(fmt.Errorf("analyzer MarkProcessed: %v", err))
			}
		}
		cw.Close(context.Background())
		if !stopped {
			if ctx.Err() == nil {
				rec.fail(fmt.Errorf("analyzer: channel closed: %v", w.Err()))
			}
			return
		}
	}
}

// event-exporter: a worker pool finishes events in any order; the token of
// the highest contiguous finished event is marked processed.
func runExporter(ctx context.Context, t *testing.T, o Options, rec *recorder, ready func()) {
	w := newWatcher(t, o, "event-exporter", production["AllHealthEventInserts"])
	cw := w.Unwrap()
	cw.Start(ctx)
	connected(t, w)
	ready()
	defer cw.Close(context.Background())
	var batch []ClientEvent
	flush := func() {
		// finish in a shuffled order, acknowledging the contiguous prefix
		done := make([]bool, len(batch))
		next := 0
		for _, i := range rand.Perm(len(batch)) {
			done[i] = true
			for next < len(batch) && done[next] {
				next++
			}
			if next > 0 {
				if err := cw.MarkProcessed(ctx, batch[next-1].GetResumeToken()); err != nil {
					rec.fail(fmt.Errorf("exporter MarkProcessed: %v", err))
				}
			}
		}
		batch = batch[:0]
	}
	for {
		select {
		case ev, ok := <-cw.Events():
			if !ok {
				if ctx.Err() == nil {
					rec.fail(fmt.Errorf("exporter: channel closed: %v", w.Err()))
				}
				return
			}
			id, _ := ev.GetDocumentID()
			rec.add(id)
			if batch = append(batch, ev); len(batch) == 3 {
				flush()
			}
		case <-time.After(200 * time.Millisecond):
			flush()
		}
	}
}

func restartRelay(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(os.Getenv("NVSRELAY_TEST_PIDFILE"))
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
	t.Logf("relay (pid %d) killed; the harness starts it again", pid)
}

func restartPostgres(t *testing.T) {
	t.Helper()
	out, err := exec.Command("sh", "-c", os.Getenv("NVSRELAY_TEST_PG_RESTART")).CombinedOutput()
	if err != nil {
		t.Fatalf("restarting PostgreSQL: %v: %s", err, out)
	}
	t.Log("PostgreSQL restarted")
}

// TestComponents drives the provider as each of NVSentinel's five
// components does, with its production pipeline, through a relay restart
// and a PostgreSQL restart: each is handed every change its pipeline
// selects once, in commit order, and nothing else; the analyzer, which
// stops on a failure, gets again only what followed its last acknowledgement.
func TestComponents(t *testing.T) {
	o := relayOrSkip(t)
	if os.Getenv("NVSRELAY_TEST_PIDFILE") == "" || os.Getenv("NVSRELAY_TEST_PG_RESTART") == "" {
		t.Skip("NVSRELAY_TEST_PIDFILE or NVSRELAY_TEST_PG_RESTART not set")
	}
	comps := []*component{
		{name: "fault-quarantine", kinds: []string{"insert processable", "insert healthy, no strategy"}, run: runFaultQuarantine},
		{name: "node-drainer", kinds: []string{"quarantine", "unquarantine"}, run: runNodeDrainer},
		{name: "fault-remediation", kinds: []string{"drained"}, run: runFaultRemediation},
		{name: "health-events-analyzer", kinds: []string{"insert processable", "quarantine", "drained", "remediated", "unquarantine"},
			run: runAnalyzer, dup: func(want []string) []string { return want[2:3] }},
		{name: "event-exporter", kinds: []string{"insert processable", "insert store-only", "insert healthy, no strategy",
			"insert by the analyzer"}, run: runExporter},
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg, started sync.WaitGroup
	for _, c := range comps {
		c := c
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			var once sync.Once
			ready := func() { once.Do(started.Done) }
			defer ready() // also when the driver gives up early
			c.run(ctx, t, o, &c.rec, ready)
		}()
	}
	defer func() {
		cancel()
		wg.Wait()
	}()
	// Every component is subscribed: from here every change is theirs.
	started.Wait()

	wr := &writer{t: t}
	tag := uniq("cs")
	wr.round(tag + "-1")
	restartRelay(t)
	wr.round(tag + "-2") // written while the relay is down or starting
	time.Sleep(time.Second)
	restartPostgres(t)
	wr.round(tag + "-3")

	for _, c := range comps {
		want := matching(wr.changes, c.kinds...)
		if c.dup != nil {
			d := c.dup(want)
			want = append(append(append([]string(nil), want[:2]...), d...), want[2:]...)
		}
		deadline := time.Now().Add(waitFor)
		for {
			got, err := c.rec.snapshot()
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
				break
			}
			if len(got) >= len(want) || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.wantIDs = want
	}
	time.Sleep(1500 * time.Millisecond) // anything extra would arrive by now
	for _, c := range comps {
		got, _ := c.rec.snapshot()
		if strings.Join(got, ",") != strings.Join(c.wantIDs, ",") {
			t.Errorf("%s was handed\n  %v\nwant (commit order, each once)\n  %v\nchanges: %v", c.name, got, c.wantIDs, wr.changes)
		} else {
			t.Logf("%s: %d changes handed over once, in commit order", c.name, len(got))
		}
	}
	// The positions are stored where NVSentinel's watcher keeps them, so a
	// rollback resumes there: fault-quarantine acknowledged its last event,
	// and the relay moved it on over the changes its pipeline filters out
	// (as NVSentinel's watcher persists filtered stretches), never further
	// than what was written.
	fq := comps[0].wantIDs
	lastFQ, _ := strconv.ParseInt(fq[len(fq)-1], 10, 64)
	lastWritten, _ := strconv.ParseInt(wr.changes[len(wr.changes)-1].id, 10, 64)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := mustPsql(t, "SELECT resume_token->>'eventID' FROM resume_tokens WHERE client_name = 'fault-quarantine'")
		id, _ := strconv.ParseInt(st, 10, 64)
		if id >= lastFQ && id <= lastWritten {
			t.Logf("fault-quarantine's stored position: eventID %d (its last event %d, last change written %d)", id, lastFQ, lastWritten)
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("fault-quarantine's stored eventID %q, want between its last event %d and the last change %d", st, lastFQ, lastWritten)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func next(t *testing.T, ch <-chan ClientEvent) ClientEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return ev
	case <-time.After(waitFor):
		t.Fatal("no event")
	}
	return nil
}

// The relay refuses the pipeline: Start returns with the channel closed
// and Err carrying the relay's message.
func TestRefusedPipelineFailsAtStart(t *testing.T) {
	o := relayOrSkip(t)
	w := newWatcher(t, o, uniq("refused-"), D(E("$project", D(E("fullDocument", 1)))))
	w.Start(context.Background())
	defer w.Close(context.Background())
	select {
	case _, ok := <-w.Events():
		if ok {
			t.Fatal("an event on a refused pipeline")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel still open after Start on a refused pipeline")
	}
	var se *nvsrelay.ServerError
	if !errors.As(w.Err(), &se) || se.Code != nvsrelay.CodeBadValue || !strings.Contains(se.Message, "pipeline[0]") {
		t.Fatalf("Err = %v, want the relay's BadValue naming pipeline[0]", w.Err())
	}
	t.Logf("refused as the relay said: %v", se)
}

// Event maps through the real relay, field by field against the changelog
// rows NVSentinel's watcher would have read.
func TestEventMapsFromRelay(t *testing.T) {
	o := relayOrSkip(t)
	w := newWatcher(t, o, uniq("maps-"), nil)
	cw := w.Unwrap()
	cw.Start(context.Background())
	defer cw.Close(context.Background())
	wr := &writer{t: t}
	node := uniq("mp")
	id := wr.insert("insert", node, 1, false, "gpu-health-monitor")
	wr.update("update", id, `jsonb_set(jsonb_set(document, '{healtheventstatus,nodequarantined}', '"Quarantined"'),`+
		` '{healtheventstatus,faultremediated}', '{"value":true}')`)
	wr.exec("delete", fmt.Sprintf("DELETE FROM health_events WHERE id = '%s'", id))
	for i, c := range wr.changes {
		ev := next(t, cw.Events()).(*Event)
		row := mustPsql(t, fmt.Sprintf(`SELECT json_build_object('op', lower(operation), 'rec', record_id,
			'new', new_values->'document', 'old', old_values->'document',
			'at', to_char(changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')) FROM datastore_changelog WHERE id = %s`, c.id))
		r := decode(t, row).(map[string]interface{})
		at, _ := time.Parse(time.RFC3339Nano, r["at"].(string))
		withID := func(d interface{}) interface{} {
			m := d.(map[string]interface{})
			m["id"] = r["rec"]
			return m
		}
		want := map[string]interface{}{
			"_id":           map[string]interface{}{"_data": c.id},
			"operationType": r["op"],
			"clusterTime":   at,
			"fullDocument":  nil,
		}
		switch i {
		case 0:
			want["fullDocument"] = withID(r["new"])
		case 1:
			want["fullDocument"] = withID(r["new"])
			want["updateDescription"] = map[string]interface{}{"updatedFields": map[string]interface{}{
				"healtheventstatus.nodequarantined":       "Quarantined",
				"healtheventstatus.faultremediated.value": true,
			}}
		case 2:
			want["fullDocumentBeforeChange"] = withID(r["old"])
		}
		t.Run(c.what, func(t *testing.T) { fields(t, ev.Map(), want) })
		if string(ev.GetResumeToken()) != c.id {
			t.Errorf("%s: resume token %q, want the changelog id %s", c.what, ev.GetResumeToken(), c.id)
		}
	}
}

// GetUnprocessedEventCount is the relay's count of the table's changes
// after an event, the same figure NVSentinel's watcher computed in SQL.
func TestUnprocessedCount(t *testing.T) {
	o := relayOrSkip(t)
	name := uniq("count-")
	w := newWatcher(t, o, name, production["ProcessableHealthEventInserts"])
	cw := w.Unwrap()
	cw.Start(context.Background())
	defer cw.Close(context.Background())
	wr := &writer{t: t}
	node := uniq("ct")
	for i := 0; i < 4; i++ {
		wr.insert("insert", fmt.Sprintf("%s-%d", node, i), 1, false, "gpu-health-monitor")
	}
	first := next(t, cw.Events())
	id, _ := first.GetDocumentID()
	m := cw.(clChangeStreamMetrics)
	got, err := m.GetUnprocessedEventCount(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	want := mustPsql(t, "SELECT count(*) FROM datastore_changelog WHERE table_name = 'health_events' AND id > "+id)
	if strconv.FormatInt(got, 10) != want || got < 3 {
		t.Fatalf("count after %s = %d, SQL says %s (at least 3 written after it)", id, got, want)
	}
	if _, err := m.GetUnprocessedEventCount(context.Background(), "99999999"); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("count after an id never handed over: %v", err)
	}
	var last string
	for i := 0; i < 3; i++ {
		last, _ = next(t, cw.Events()).GetDocumentID()
	}
	want = mustPsql(t, "SELECT count(*) FROM datastore_changelog WHERE table_name = 'health_events' AND id > "+last)
	// The current position is the last event handed over.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := m.GetUnprocessedEventCount(context.Background(), "")
		if err == nil && strconv.FormatInt(n, 10) == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("count at the current position = %d, %v; SQL after the last event says %s", n, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// An empty token acknowledges the current position: the stored eventID
	// reaches the last event handed over.
	if err := cw.MarkProcessed(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	lastID, _ := strconv.ParseInt(last, 10, 64)
	deadline = time.Now().Add(10 * time.Second)
	for {
		st, _ := strconv.ParseInt(mustPsql(t, "SELECT coalesce(resume_token->>'eventID', '0') FROM resume_tokens WHERE client_name = "+sqlQuote(name)), 10, 64)
		if st >= lastID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stored eventID %d after MarkProcessed(empty), want at least %d", st, lastID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A component moving over from NVSentinel's own watcher keeps its
// position, even when NVSentinel's cleanup already removed that row.
func TestMoveOverKeepsPosition(t *testing.T) {
	o := relayOrSkip(t)
	name := uniq("mover-")
	wr := &writer{t: t}
	node := uniq("mv")
	for i := 0; i < 4; i++ {
		wr.insert("insert", fmt.Sprintf("%s-%d", node, i), 1, false, "gpu-health-monitor")
	}
	// NVSentinel's watcher had processed the second; cleanup removed the
	// first two rows.
	mustPsql(t, fmt.Sprintf(`INSERT INTO resume_tokens (client_name, resume_token, last_updated) VALUES (%s,
		jsonb_build_object('timestamp', '2026-11-25T10:00:00Z', 'eventID', %s::bigint), now());
		DELETE FROM datastore_changelog WHERE id IN (%s, %s)`, sqlQuote(name), wr.changes[1].id, wr.changes[0].id, wr.changes[1].id))
	w := newWatcher(t, o, name, nil)
	cw := w.Unwrap()
	cw.Start(context.Background())
	defer cw.Close(context.Background())
	for _, c := range wr.changes[2:] {
		ev := next(t, cw.Events())
		if id, _ := ev.GetDocumentID(); id != c.id {
			t.Fatalf("after moving over: got change %s, want %s", id, c.id)
		}
	}
}
