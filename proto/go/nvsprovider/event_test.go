package nvsprovider

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// A relay token for changelog row 136 (0x88), generation 1eaa650c, tick 5.
const tok136 = "1eaa650c" + "0000000000000005" + "0000000000000088"

func mustConvert(t *testing.T, raw string) map[string]interface{} {
	t.Helper()
	m, err := Convert([]byte(raw))
	if err != nil {
		t.Fatalf("Convert: %v", err)
	}
	return m
}

func decode(t *testing.T, s string) interface{} {
	t.Helper()
	var v interface{}
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("bad test JSON %s: %v", s, err)
	}
	return v
}

// fields compares m with want key by key, so a failure names the field.
func fields(t *testing.T, m map[string]interface{}, want map[string]interface{}) {
	t.Helper()
	for k, w := range want {
		g, ok := m[k]
		if !ok {
			t.Errorf("%s: missing", k)
			continue
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s:\n got  %#v\n want %#v", k, g, w)
		}
	}
	for k := range m {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: present, NVSentinel's watcher has no such field (%#v)", k, m[k])
		}
	}
}

const insertDoc = `{"createdAt":"2026-11-25T10:00:00.5Z","healthevent":{"nodeName":"node-1","agent":"gpu-health-monitor",
 "checkName":"GpuXidError","isFatal":true,"errorCode":["79"],"processingStrategy":1,
 "generatedTimestamp":{"seconds":1764064800,"nanos":5}},
 "healtheventstatus":{"nodequarantined":null,"userpodsevictionstatus":{"status":""},"faultremediated":null,
 "spanids":{"platform-connector":"s1"}},"id":"0b8a1c2e-6d33-4d0f-9a52-7f3a5a1f0d11"}`

func TestConvertInsert(t *testing.T) {
	m := mustConvert(t, `{"_id":{"_data":"`+tok136+`"},"operationType":"insert","clusterTime":"2026-11-25T10:00:00.123456Z",
		"ns":{"db":"nvsentinel","coll":"health_events"},"documentKey":{"_id":"0b8a1c2e-6d33-4d0f-9a52-7f3a5a1f0d11"},
		"fullDocument":`+insertDoc+`}`)
	fields(t, m, map[string]interface{}{
		"_id":           map[string]interface{}{"_data": "136"},
		"operationType": "insert",
		"clusterTime":   time.Date(2026, 11, 25, 10, 0, 0, 123456000, time.UTC),
		"fullDocument":  decode(t, insertDoc),
	})
}

func TestConvertUpdateFlattensLikeNVSentinel(t *testing.T) {
	before := `{"createdAt":"2026-11-25T10:00:00.5Z","healthevent":{"nodeName":"node-1","errorCode":["79"],"message":"old"},
	 "healtheventstatus":{"nodequarantined":null,"userpodsevictionstatus":{"status":""},"faultremediated":null,
	 "spanids":{"platform-connector":"s1"}},"id":"u-1"}`
	after := `{"createdAt":"2026-11-25T10:00:00.5Z","healthevent":{"nodeName":"node-1","errorCode":["79","48"]},
	 "healtheventstatus":{"nodequarantined":"Quarantined","userpodsevictionstatus":{"status":"Succeeded","metadata":null},
	 "faultremediated":{"value":true},"quarantinefinishtimestamp":{"seconds":5,"nanos":0},
	 "spanids":{"platform-connector":"s1","fault-quarantine":"abc"}},"addedNull":null,"id":"u-1"}`
	// The relay's own diff reports new objects whole and lists removals;
	// neither may reach the component.
	m := mustConvert(t, `{"_id":{"_data":"`+tok136+`"},"operationType":"update","clusterTime":"2026-11-25T10:00:01Z",
		"ns":{"db":"nvsentinel","coll":"health_events"},"documentKey":{"_id":"u-1"},
		"fullDocument":`+after+`,"fullDocumentBeforeChange":`+before+`,
		"updateDescription":{"updatedFields":{"healtheventstatus.faultremediated":{"value":true}},"removedFields":["healthevent.message"]}}`)
	fields(t, m, map[string]interface{}{
		"_id":           map[string]interface{}{"_data": "136"},
		"operationType": "update",
		"clusterTime":   time.Date(2026, 11, 25, 10, 0, 1, 0, time.UTC),
		"fullDocument":  decode(t, after),
		"updateDescription": map[string]interface{}{"updatedFields": map[string]interface{}{
			"healthevent.errorCode":                               []interface{}{"79", "48"},
			"healtheventstatus.nodequarantined":                   "Quarantined",
			"healtheventstatus.userpodsevictionstatus.status":     "Succeeded",
			"healtheventstatus.faultremediated.value":             true,
			"healtheventstatus.quarantinefinishtimestamp.seconds": float64(5),
			"healtheventstatus.quarantinefinishtimestamp.nanos":   float64(0),
			"healtheventstatus.spanids.fault-quarantine":          "abc",
			"addedNull": nil,
		}},
	})
}

func TestConvertUpdateWithoutChangeHasNoDescription(t *testing.T) {
	doc := `{"healthevent":{"nodeName":"n"},"id":"u-2"}`
	m := mustConvert(t, `{"_id":{"_data":"`+tok136+`"},"operationType":"update","clusterTime":"2026-11-25T10:00:01Z",
		"fullDocument":`+doc+`,"fullDocumentBeforeChange":`+doc+`,"updateDescription":{"updatedFields":{},"removedFields":[]}}`)
	if _, ok := m["updateDescription"]; ok {
		t.Fatalf("updateDescription present for an update that changed nothing: %#v", m["updateDescription"])
	}
	if _, ok := m["fullDocumentBeforeChange"]; ok {
		t.Fatal("fullDocumentBeforeChange handed on for an update")
	}
}

func TestConvertUpdateWithoutPreImageUsesRelayDiff(t *testing.T) {
	m := mustConvert(t, `{"_id":{"_data":"`+tok136+`"},"operationType":"update","clusterTime":"2026-11-25T10:00:01Z",
		"fullDocument":{"a":{"b":2},"id":"x"},
		"updateDescription":{"updatedFields":{"a.b":2},"removedFields":["c"]}}`)
	want := map[string]interface{}{"updatedFields": map[string]interface{}{"a.b": float64(2)}}
	if !reflect.DeepEqual(m["updateDescription"], want) {
		t.Fatalf("updateDescription %#v, want %#v", m["updateDescription"], want)
	}
}

func TestConvertDelete(t *testing.T) {
	old := `{"healthevent":{"nodeName":"node-9"},"id":"u-9"}`
	m := mustConvert(t, `{"_id":{"_data":"`+tok136+`"},"operationType":"delete","clusterTime":"2026-11-25T10:00:02Z",
		"documentKey":{"_id":"u-9"},"fullDocument":null,"fullDocumentBeforeChange":`+old+`}`)
	fields(t, m, map[string]interface{}{
		"_id":                      map[string]interface{}{"_data": "136"},
		"operationType":            "delete",
		"clusterTime":              time.Date(2026, 11, 25, 10, 0, 2, 0, time.UTC),
		"fullDocument":             nil,
		"fullDocumentBeforeChange": decode(t, old),
	})
}

func TestConvertMaintenanceRowIsNotUnwrapped(t *testing.T) {
	row := `{"id":"m-1","event_id":"e-1","status":"DETECTED","document":{"eventId":"e-1","status":"DETECTED","nodeName":"n-1"}}`
	m := mustConvert(t, `{"_id":{"_data":"`+tok136+`"},"operationType":"insert","clusterTime":"2026-11-25T10:00:02Z",
		"ns":{"db":"nvsentinel","coll":"maintenance_events"},"fullDocument":`+row+`}`)
	if !reflect.DeepEqual(m["fullDocument"], decode(t, row)) {
		t.Fatalf("fullDocument %#v", m["fullDocument"])
	}
	ev := NewEvent(m, []byte("136"))
	var doc struct {
		ID      string `json:"_id"`
		EventID string `json:"eventId"`
		Node    string `json:"nodeName"`
	}
	if err := ev.UnmarshalDocument(&doc); err != nil || doc.ID != "m-1" || doc.EventID != "e-1" || doc.Node != "n-1" {
		t.Fatalf("UnmarshalDocument of a whole row: %+v, %v", doc, err)
	}
}

func TestConvertRefusesGarbage(t *testing.T) {
	for _, raw := range []string{`[]`, `{}`, `{"_id":{"_data":"x"},"operationType":"insert","clusterTime":"yesterday"}`, `nope`} {
		if _, err := Convert([]byte(raw)); err == nil {
			t.Errorf("Convert(%s) accepted", raw)
		}
	}
}

func TestClientEventAccessors(t *testing.T) {
	m := mustConvert(t, `{"_id":{"_data":"`+tok136+`"},"operationType":"insert","clusterTime":"2026-11-25T10:00:00Z","fullDocument":`+insertDoc+`}`)
	ev := NewEvent(m, []byte("136"))
	if id, err := ev.GetDocumentID(); err != nil || id != "136" {
		t.Errorf("GetDocumentID = %q, %v; want the changelog id 136", id, err)
	}
	if id, err := ev.GetRecordUUID(); err != nil || id != "0b8a1c2e-6d33-4d0f-9a52-7f3a5a1f0d11" {
		t.Errorf("GetRecordUUID = %q, %v", id, err)
	}
	if n, err := ev.GetNodeName(); err != nil || n != "node-1" {
		t.Errorf("GetNodeName = %q, %v", n, err)
	}
	if string(ev.GetResumeToken()) != "136" {
		t.Errorf("GetResumeToken = %q", ev.GetResumeToken())
	}
	if ev.UpdatedFields() != nil {
		t.Errorf("UpdatedFields of an insert = %#v, want nil", ev.UpdatedFields())
	}
	// The shape of NVSentinel's model.HealthEventWithStatus as encoding/json
	// sees it (field names matched case-insensitively).
	var doc struct {
		CreatedAt   time.Time `json:"createdAt"`
		HealthEvent struct {
			NodeName           string   `json:"nodeName"`
			IsFatal            bool     `json:"isFatal"`
			ErrorCode          []string `json:"errorCode"`
			ProcessingStrategy int32    `json:"processingStrategy"`
		} `json:"healthevent"`
		Status struct {
			NodeQuarantined *string `json:"nodequarantined"`
			Eviction        struct {
				Status string `json:"status"`
			} `json:"userpodsevictionstatus"`
		} `json:"healtheventstatus"`
	}
	if err := ev.UnmarshalDocument(&doc); err != nil {
		t.Fatalf("UnmarshalDocument: %v", err)
	}
	if !doc.CreatedAt.Equal(time.Date(2026, 11, 25, 10, 0, 0, 500000000, time.UTC)) || doc.HealthEvent.NodeName != "node-1" ||
		!doc.HealthEvent.IsFatal || len(doc.HealthEvent.ErrorCode) != 1 || doc.HealthEvent.ProcessingStrategy != 1 ||
		doc.Status.NodeQuarantined != nil {
		t.Fatalf("UnmarshalDocument: %+v", doc)
	}

	upd := NewEvent(map[string]interface{}{"_id": map[string]interface{}{"_data": "137"}, "operationType": "update",
		"fullDocument": map[string]interface{}{"id": "u"},
		"updateDescription": map[string]interface{}{"updatedFields": map[string]interface{}{
			"healtheventstatus.faultquarantinerecovery": "x"}}}, []byte("137"))
	// client.EventUpdatesOnly: exactly one updated field, the one named.
	if uf := upd.UpdatedFields(); len(uf) != 1 || uf["healtheventstatus.faultquarantinerecovery"] != "x" {
		t.Errorf("UpdatedFields = %#v", uf)
	}

	del := NewEvent(map[string]interface{}{"_id": map[string]interface{}{"_data": "138"}, "fullDocument": nil}, nil)
	var v map[string]interface{}
	if err := del.UnmarshalDocument(&v); err == nil {
		t.Error("UnmarshalDocument of a delete (no fullDocument) succeeded; NVSentinel's fails it")
	}
	if _, err := del.GetRecordUUID(); err == nil {
		t.Error("GetRecordUUID without fullDocument succeeded")
	}
	if _, err := del.GetNodeName(); err == nil {
		t.Error("GetNodeName without fullDocument succeeded")
	}
	if _, err := NewEvent(map[string]interface{}{}, nil).GetDocumentID(); err == nil {
		t.Error("GetDocumentID without _id succeeded")
	}
}

func TestChangelogID(t *testing.T) {
	for tok, want := range map[string]string{
		tok136: "136",
		"1eaa650c0000000000000005ffffffffffffffff": "18446744073709551615",
		"1eaa650c00000000000000050000000000000000": "0",
	} {
		if got := changelogID(tok); got != want {
			t.Errorf("changelogID(%s) = %s, want %s", tok, got, want)
		}
	}
}
