package nvsprovider

import (
	"context"
	"time"
)

// What NVSentinel's store-client declares, restated. Each method set is
// NVSentinel's; the named types in the signatures are this package's
// counterparts (EventWithToken, ClientEvent, ClientChangeStreamWatcher,
// ResumeControlDecision), which the bridge in NVSentinel maps one to one.

// datastore.ChangeStreamWatcher
type dsChangeStreamWatcher interface {
	Events() <-chan EventWithToken
	Start(ctx context.Context)
	MarkProcessed(ctx context.Context, token []byte) error
	Close(ctx context.Context) error
}

// client.Event
type clEvent interface {
	GetDocumentID() (string, error)
	GetRecordUUID() (string, error)
	GetNodeName() (string, error)
	GetResumeToken() []byte
	UnmarshalDocument(v any) error
}

// The optional accessor client.EventUpdatesOnly looks for.
type clUpdatedFieldsEvent interface {
	UpdatedFields() map[string]any
}

// client.ChangeStreamWatcher
type clChangeStreamWatcher interface {
	Start(ctx context.Context)
	Events() <-chan ClientEvent
	MarkProcessed(ctx context.Context, token []byte) error
	Close(ctx context.Context) error
}

// client.ChangeStreamMetrics
type clChangeStreamMetrics interface {
	GetUnprocessedEventCount(ctx context.Context, lastProcessedID string) (int64, error)
}

// client.ChangeStreamWatcherWithResumeControl, minus the embedded watcher.
type resumeControlled interface {
	ResumeControlDecision() ResumeControlDecision
}

// lagstate.Provider (and commons' LagStateProvider).
type lagProvider interface {
	LagState() (lastEmptyBatch, lastEventRead time.Time)
}

// The inline interface node-drainer, fault-quarantine and the
// health-events-analyzer assert on the datastore watcher.
type unwrapper interface {
	Unwrap() ClientChangeStreamWatcher
}

var (
	_ dsChangeStreamWatcher = (*Watcher)(nil)
	_ unwrapper             = (*Watcher)(nil)
	_ resumeControlled      = (*Watcher)(nil)
	_ lagProvider           = (*Watcher)(nil)
	_ clChangeStreamMetrics = (*Watcher)(nil)

	_ clChangeStreamWatcher = (*clientView)(nil)
	_ clChangeStreamMetrics = (*clientView)(nil)
	_ resumeControlled      = (*clientView)(nil)
	_ lagProvider           = (*clientView)(nil)

	_ clEvent              = (*Event)(nil)
	_ clUpdatedFieldsEvent = (*Event)(nil)
	_ ClientEvent          = clEvent(nil)
	_ clEvent              = ClientEvent(nil)
)
