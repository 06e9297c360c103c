package nvsprovider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) logf(format string, args ...interface{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimSpace(sprintf(format, args...)))
}

func (l *logBuf) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func TestNewChecksOptionsWithoutIO(t *testing.T) {
	if _, err := New(Options{ClientName: "x"}); err == nil {
		t.Error("no Socket or Addr accepted")
	}
	if _, err := New(Options{Socket: "/nonexistent"}); err == nil {
		t.Error("no ClientName accepted")
	}
	if _, err := New(Options{Socket: "/nonexistent", ClientName: "x", Pipeline: make(chan int)}); err == nil {
		t.Error("a pipeline that cannot be JSON accepted")
	}
	// A listener that counts connections: construction must make none.
	dir := t.TempDir()
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- struct{}{}
			c.Close()
		}
	}()
	w, err := New(Options{Socket: sock, ClientName: "fault-quarantine"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-accepted:
		t.Fatal("New connected")
	case <-time.After(200 * time.Millisecond):
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-w.Events(); ok {
		t.Fatal("Events open after Close without Start")
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal("second Close:", err)
	}
}

// No daemon: Start returns, the channel stays open while it retries, and
// Close ends it cleanly.
func TestStartWithoutRelayKeepsTrying(t *testing.T) {
	var lb logBuf
	sock := filepath.Join(t.TempDir(), "absent.sock")
	w, err := New(Options{Socket: sock, ClientName: "node-drainer", MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 20 * time.Millisecond, Logf: lb.logf})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	w.Start(context.Background())
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("Start took %v without a relay", d)
	}
	select {
	case _, ok := <-w.Unwrap().Events():
		t.Fatalf("channel delivered or closed (ok=%v) without a relay", ok)
	case <-time.After(300 * time.Millisecond):
	}
	if !lb.has("cannot reach nvsrelayd") {
		t.Errorf("no retry logged: %q", lb.lines)
	}
	if err := w.MarkProcessed(context.Background(), []byte("12")); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("MarkProcessed of a token never handed over: %v", err)
	}
	if err := w.MarkProcessed(context.Background(), nil); err != nil {
		t.Errorf("MarkProcessed(empty) before any event: %v", err)
	}
	if _, err := w.GetUnprocessedEventCount(context.Background(), "abc"); err == nil || !strings.Contains(err.Error(), "invalid lastProcessedID") {
		t.Errorf("GetUnprocessedEventCount(abc): %v", err)
	}
	// The relay appears: the watcher connects by itself (it says hello).
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ln.(*net.UnixListener).SetDeadline(time.Now().Add(10 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		t.Fatalf("no reconnect once the socket exists: %v", err)
	}
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := c.Read(buf)
	if !strings.Contains(string(buf[:n]), `"op":"hello"`) {
		t.Errorf("first frame %q", buf[:n])
	}
	c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-w.Events(); ok {
		t.Fatal("Events open after Close")
	}
	if w.Err() != nil {
		t.Errorf("Err after Close = %v, want nil", w.Err())
	}
}

func TestUnwrapView(t *testing.T) {
	d := ResumeControlDecision{StartFresh: true, ColdStartCutoff: time.Unix(1764064800, 0)}
	w, err := New(Options{Socket: "/nonexistent", ClientName: "fault-quarantine", Decision: d})
	if err != nil {
		t.Fatal(err)
	}
	var u interface{} = w.Unwrap()
	// What components assert at run time on the unwrapped watcher.
	if _, ok := u.(clChangeStreamMetrics); !ok {
		t.Error("unwrapped watcher is not a ChangeStreamMetrics: fault-quarantine's backlog gauge would read -1")
	}
	if rc, ok := u.(resumeControlled); !ok || rc.ResumeControlDecision() != d {
		t.Error("unwrapped watcher lost the resume-control decision")
	}
	if _, ok := u.(lagProvider); !ok {
		t.Error("unwrapped watcher does not pass LagState on")
	}
	if w.ResumeControlDecision() != d {
		t.Error("ResumeControlDecision not passed through")
	}
	if a, b := w.LagState(); !a.IsZero() || !b.IsZero() {
		t.Error("LagState before any read is not unknown (zero)")
	}
	w.Close(context.Background())
}

func sprintf(format string, args ...interface{}) string { return fmt.Sprintf(format, args...) }
