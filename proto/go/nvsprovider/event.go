package nvsprovider

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// relayEvent is the part of the relay's event (PROTOCOL.md, "The change
// event") that the NVSentinel map is built from.
type relayEvent struct {
	ID struct {
		Data string `json:"_data"`
	} `json:"_id"`
	OperationType            string                 `json:"operationType"`
	ClusterTime              string                 `json:"clusterTime"`
	FullDocument             interface{}            `json:"fullDocument"`
	FullDocumentBeforeChange map[string]interface{} `json:"fullDocumentBeforeChange"`
	UpdateDescription        *struct {
		UpdatedFields map[string]interface{} `json:"updatedFields"`
	} `json:"updateDescription"`
}

// Convert turns one relay event into the map NVSentinel's PostgreSQL
// watcher hands components for the same change:
//
//   - _id: {"_data": "<changelog id>"}, the decimal id (GetDocumentID's
//     value, and the resume token), not the relay's 40-digit token;
//   - operationType: insert, update, delete (anything else "unknown");
//   - clusterTime: a time.Time (UTC), not a string;
//   - fullDocument: for health_events the stored document plus "id" (the
//     record UUID), for maintenance_events the whole row; nil on delete
//     (the key is always there);
//   - fullDocumentBeforeChange: on delete only;
//   - updateDescription: on update only, and only when something changed:
//     {"updatedFields": {...}} flattened to changed leaves as NVSentinel's
//     findUpdatedFields does (an object that appears or replaces a scalar
//     is reported leaf by leaf, null leaves that appear are not reported,
//     arrays are reported whole, removed keys not at all);
//   - no ns, documentKey or removedFields.
//
// The relay's own updatedFields report a new object whole; that is what
// pipelines on updateDescription.updatedFields match, and for the paths
// NVSentinel's pipelines name (leaves) the two agree.
func Convert(raw []byte) (map[string]interface{}, error) {
	var ev relayEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil, fmt.Errorf("nvsprovider: relay event is not a JSON object: %v", err)
	}
	if ev.ID.Data == "" || ev.OperationType == "" {
		return nil, errors.New("nvsprovider: relay event without _id._data or operationType")
	}
	ct, err := time.Parse(time.RFC3339Nano, ev.ClusterTime)
	if err != nil {
		return nil, fmt.Errorf("nvsprovider: relay event clusterTime %q: %v", ev.ClusterTime, err)
	}
	m := map[string]interface{}{
		"_id":           map[string]interface{}{"_data": changelogID(ev.ID.Data)},
		"operationType": ev.OperationType,
		"clusterTime":   ct.UTC(),
		"fullDocument":  nil,
	}
	switch ev.OperationType {
	case "insert":
		m["fullDocument"] = ev.FullDocument
	case "update":
		m["fullDocument"] = ev.FullDocument
		var uf map[string]interface{}
		newDoc, isMap := ev.FullDocument.(map[string]interface{})
		switch {
		case isMap && ev.FullDocumentBeforeChange != nil:
			uf = updatedFields(ev.FullDocumentBeforeChange, newDoc)
		case ev.UpdateDescription != nil:
			// No pre-image (the row had none): the relay's own diff.
			uf = ev.UpdateDescription.UpdatedFields
		}
		if len(uf) > 0 {
			m["updateDescription"] = map[string]interface{}{"updatedFields": uf}
		}
	case "delete":
		if ev.FullDocumentBeforeChange != nil {
			m["fullDocumentBeforeChange"] = ev.FullDocumentBeforeChange
		}
	default:
		m["operationType"] = "unknown"
	}
	return m, nil
}

// updatedFields: the keys of newDoc whose value differs from oldDoc's; a
// changed object is descended into (against whatever the old side held)
// and only its differing leaves are reported, under dotted paths.
func updatedFields(oldDoc, newDoc map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{})
	for k, nv := range newDoc {
		ov, had := oldDoc[k]
		if had && sameValue(ov, nv) {
			continue
		}
		if nm, ok := nv.(map[string]interface{}); ok {
			changedLeaves(k, nm, ov, out)
		} else {
			out[k] = nv
		}
	}
	return out
}

func changedLeaves(prefix string, nm map[string]interface{}, old interface{}, out map[string]interface{}) {
	om, _ := old.(map[string]interface{})
	for k, v := range nm {
		path := prefix + "." + k
		var ov interface{}
		if om != nil {
			ov = om[k]
		}
		if vm, ok := v.(map[string]interface{}); ok {
			changedLeaves(path, vm, ov, out)
		} else if !sameValue(ov, v) {
			out[path] = v
		}
	}
}

// sameValue is deep equality of decoded JSON; a missing value and null
// are the same, as in NVSentinel's comparison.
func sameValue(a, b interface{}) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	switch av := a.(type) {
	case map[string]interface{}:
		bv, ok := b.(map[string]interface{})
		if !ok || len(av) != len(bv) {
			return false
		}
		for k, x := range av {
			y, ok := bv[k]
			if !ok || !sameValue(x, y) {
				return false
			}
		}
		return true
	case []interface{}:
		bv, ok := b.([]interface{})
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !sameValue(av[i], bv[i]) {
				return false
			}
		}
		return true
	default:
		switch b.(type) {
		case map[string]interface{}, []interface{}:
			return false
		}
		return a == b
	}
}

// Event is one change as NVSentinel's client.Event, over the same map the
// datastore view hands out.
type Event struct {
	data  map[string]interface{}
	token []byte
}

// NewEvent wraps a converted event map and its resume token.
func NewEvent(m map[string]interface{}, token []byte) *Event {
	return &Event{data: m, token: token}
}

// Map is the event map (shared, not a copy).
func (e *Event) Map() map[string]interface{} { return e.data }

// GetDocumentID returns _id._data: the changelog id, int-parseable, which
// fault-quarantine passes to GetUnprocessedEventCount.
func (e *Event) GetDocumentID() (string, error) {
	id, ok := e.data["_id"]
	if !ok {
		return "", errors.New("changelog sequence ID not found in event")
	}
	if im, ok := id.(map[string]interface{}); ok {
		if d, ok := im["_data"]; ok {
			return fmt.Sprintf("%v", d), nil
		}
	}
	return fmt.Sprintf("%v", id), nil
}

// GetRecordUUID returns fullDocument.id (the row's UUID), else
// fullDocument._id.
func (e *Event) GetRecordUUID() (string, error) {
	if fd, ok := e.data["fullDocument"].(map[string]interface{}); ok {
		for _, k := range []string{"id", "_id"} {
			if v, ok := fd[k]; ok {
				return fmt.Sprintf("%v", v), nil
			}
		}
	}
	return "", errors.New("record UUID not found in fullDocument")
}

// GetNodeName returns fullDocument.healthevent.nodename (as MongoDB stores
// it), else .nodeName (as PostgreSQL does).
func (e *Event) GetNodeName() (string, error) {
	notFound := errors.New("node name not found in event")
	fd, ok := e.data["fullDocument"].(map[string]interface{})
	if !ok {
		return "", notFound
	}
	he, ok := fd["healthevent"].(map[string]interface{})
	if !ok {
		return "", notFound
	}
	for _, k := range []string{"nodename", "nodeName"} {
		if s, ok := he[k].(string); ok {
			return s, nil
		}
	}
	return "", notFound
}

// GetResumeToken returns the token to pass to MarkProcessed.
func (e *Event) GetResumeToken() []byte { return e.token }

// UpdatedFields is the accessor behind NVSentinel's EventUpdatesOnly:
// updateDescription.updatedFields, nil for inserts and deletes.
func (e *Event) UpdatedFields() map[string]interface{} {
	ud, ok := e.data["updateDescription"].(map[string]interface{})
	if !ok {
		return nil
	}
	uf, _ := ud["updatedFields"].(map[string]interface{})
	return uf
}

// UnmarshalDocument decodes fullDocument into v with encoding/json, as
// NVSentinel's adapter does: a nested "document" object (a whole row) is
// decoded instead, with the row's id as _id, and "createdat" keys become
// "createdAt".
func (e *Event) UnmarshalDocument(v interface{}) error {
	fd, ok := e.data["fullDocument"]
	if !ok {
		return errors.New("fullDocument not found in event")
	}
	doc, ok := fd.(map[string]interface{})
	if !ok {
		return errors.New("fullDocument is not a map[string]interface{}")
	}
	if inner, ok := doc["document"].(map[string]interface{}); ok {
		cp := make(map[string]interface{}, len(inner)+1)
		for k, x := range inner {
			cp[k] = x
		}
		if id, ok := doc["id"]; ok {
			cp["_id"] = id
		}
		doc = cp
	}
	b, err := json.Marshal(renameCreatedAt(doc))
	if err != nil {
		return fmt.Errorf("failed to marshal event document: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("failed to unmarshal event document: %w", err)
	}
	return nil
}

func renameCreatedAt(m map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(m))
	for k, v := range m {
		if vm, ok := v.(map[string]interface{}); ok {
			v = renameCreatedAt(vm)
		}
		if k == "createdat" {
			k = "createdAt"
		}
		out[k] = v
	}
	return out
}
