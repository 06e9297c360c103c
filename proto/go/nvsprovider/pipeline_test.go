package nvsprovider

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The helpers NVSentinel's datastore package offers, restated.
func E(k string, v interface{}) Element    { return Element{Key: k, Value: v} }
func D(els ...Element) Document            { return Document(els) }
func A(vs ...interface{}) Array            { return Array(vs) }
func toPipeline(docs ...Document) Pipeline { return Pipeline(docs) }
func withExtendedFilters(p interface{}) PipelineOptions {
	return PipelineOptions{Pipeline: p, EnableExtendedFilters: true}
}

// The five production pipelines as NVSentinel's PostgreSQL pipeline
// builder assembles them: Documents of Elements, int32 enum values.
var production = map[string]interface{}{
	"AllHealthEventInserts": toPipeline(
		D(E("$match", D(E("operationType", D(E("$in", A("insert"))))))),
	),
	"ProcessableHealthEventInserts": toPipeline(
		D(E("$match", D(
			E("operationType", D(E("$in", A("insert")))),
			E("$or", A(
				D(E("fullDocument.healthevent.processingstrategy", int32(1))),
				D(E("fullDocument.healthevent.processingstrategy", D(E("$exists", false)))),
			)),
		))),
	),
	"ProcessableNonFatalUnhealthyInserts": withExtendedFilters(toPipeline(
		D(E("$match", D(
			E("operationType", D(E("$in", A("insert", "update")))),
			E("fullDocument.healthevent.agent", D(E("$ne", "health-events-analyzer"))),
			E("fullDocument.healthevent.ishealthy", false),
			E("$or", A(
				D(E("fullDocument.healthevent.processingstrategy", int32(1))),
				D(E("fullDocument.healthevent.processingstrategy", int32(3))),
				D(E("fullDocument.healthevent.processingstrategy", D(E("$exists", false)))),
			)),
		))),
	)),
	"NodeQuarantineStatus": toPipeline(
		D(E("$match", D(E("$or", A(
			D(
				E("operationType", "update"),
				E("$or", A(
					D(E("updateDescription.updatedFields", D(E("healtheventstatus.nodequarantined", "Quarantined")))),
					D(E("updateDescription.updatedFields", D(E("healtheventstatus.nodequarantined", "AlreadyQuarantined")))),
					D(E("updateDescription.updatedFields", D(E("healtheventstatus.nodequarantined", "UnQuarantined")))),
					D(E("updateDescription.updatedFields", D(E("healtheventstatus.nodequarantined", "Cancelled")))),
				)),
			),
			D(
				E("operationType", "insert"),
				E("fullDocument.healtheventstatus.nodequarantined", D(E("$in",
					A("Quarantined", "AlreadyQuarantined", "UnQuarantined", "Cancelled")))),
			),
		))))),
	),
	"QuarantinedAndDrainedNodes": toPipeline(
		D(E("$match", D(E("$or", A(
			D(
				E("operationType", "update"),
				E("$or", A(
					D(
						E("updateDescription.updatedFields", D(E("healtheventstatus.userpodsevictionstatus.status",
							D(E("$in", A("Succeeded", "AlreadyDrained")))))),
						E("fullDocument.healtheventstatus.nodequarantined", D(E("$in", A("Quarantined", "AlreadyQuarantined")))),
					),
					D(
						E("updateDescription.updatedFields", D(E("healtheventstatus.userpodsevictionstatus.status", "Succeeded"))),
						E("fullDocument.healtheventstatus.nodequarantined", "UnQuarantined"),
					),
					D(
						E("updateDescription.updatedFields", D(E("healtheventstatus.nodequarantined", "Cancelled"))),
						E("fullDocument.healtheventstatus.nodequarantined", "Cancelled"),
					),
				)),
			),
			D(
				E("operationType", "insert"),
				E("$or", A(
					D(
						E("fullDocument.healtheventstatus.userpodsevictionstatus.status", D(E("$in", A("Succeeded", "AlreadyDrained")))),
						E("fullDocument.healtheventstatus.nodequarantined", D(E("$in", A("Quarantined", "AlreadyQuarantined")))),
					),
					D(
						E("fullDocument.healtheventstatus.nodequarantined", "UnQuarantined"),
						E("fullDocument.healtheventstatus.userpodsevictionstatus.status", "Succeeded"),
					),
					D(E("fullDocument.healtheventstatus.nodequarantined", "Cancelled")),
				)),
			),
		))))),
	),
}

func sameJSON(t *testing.T, what string, got []byte, want []byte) {
	t.Helper()
	var g, w interface{}
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: converted pipeline is not JSON: %v: %s", what, err, got)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: reference is not JSON: %v", what, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got  %s\n want %s", what, got, want)
	}
}

// Each production pipeline becomes exactly the JSON the relay's own tests
// (tests/pipelines/) check the selection of.
func TestProductionPipelines(t *testing.T) {
	for name, p := range production {
		want, err := os.ReadFile(filepath.Join("..", "..", "..", "tests", "pipelines", name+".json"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := ConvertPipeline(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		sameJSON(t, name, got, want)
	}
}

func TestPipelineForms(t *testing.T) {
	want := []byte(`[{"$match":{"operationType":{"$in":["insert"]},"fullDocument.healthevent.isfatal":true}}]`)
	forms := map[string]interface{}{
		"[]map": []map[string]interface{}{{"$match": map[string]interface{}{
			"operationType": map[string]interface{}{"$in": []string{"insert"}}, "fullDocument.healthevent.isfatal": true}}},
		"[]interface{}": []interface{}{map[string]interface{}{"$match": map[string]interface{}{
			"operationType": map[string]interface{}{"$in": []interface{}{"insert"}}, "fullDocument.healthevent.isfatal": true}}},
		"single stage map": map[string]interface{}{"$match": map[string]interface{}{
			"operationType": map[string]interface{}{"$in": []string{"insert"}}, "fullDocument.healthevent.isfatal": true}},
		"single Document": D(E("$match", D(E("operationType", D(E("$in", A("insert")))), E("fullDocument.healthevent.isfatal", true)))),
		"[]Document": []Document{D(E("$match", map[string]interface{}{
			"operationType": D(E("$in", []string{"insert"})), "fullDocument.healthevent.isfatal": true}))},
		"PipelineOptions": PipelineOptions{Pipeline: toPipeline(D(E("$match", D(E("operationType", D(E("$in", A("insert")))),
			E("fullDocument.healthevent.isfatal", true)))))},
		"*PipelineOptions": &PipelineOptions{Pipeline: string(want)},
		"json.RawMessage":  json.RawMessage(want),
		"[]byte":           want,
		"string":           "  " + string(want) + "\n",
	}
	for name, p := range forms {
		got, err := ConvertPipeline(p)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		sameJSON(t, name, got, want)
	}
	// Another package's types of the same shape (NVSentinel's own).
	type el struct {
		Key   string      `json:"key"`
		Value interface{} `json:"value"`
	}
	type doc []el
	type opts struct {
		Pipeline              any
		EnableExtendedFilters bool
	}
	got, err := ConvertPipeline(opts{Pipeline: []doc{{{"$match", doc{{"operationType", doc{{"$in", []any{"insert"}}}},
		{"fullDocument.healthevent.isfatal", true}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "look-alike types", got, want)
	// Order of a Document's keys is kept.
	got, _ = ConvertPipeline(D(E("$match", D(E("b", 1), E("a", 2)))))
	if string(got) != `[{"$match":{"b":1,"a":2}}]` {
		t.Errorf("key order: %s", got)
	}
	for _, none := range []interface{}{nil, Pipeline(nil), (*PipelineOptions)(nil)} {
		if got, err := ConvertPipeline(none); err != nil || got != nil {
			t.Errorf("ConvertPipeline(%#v) = %s, %v; want no pipeline", none, got, err)
		}
	}
}

func TestPipelineErrors(t *testing.T) {
	for name, p := range map[string]interface{}{
		"channel":         []interface{}{map[string]interface{}{"$match": map[string]interface{}{"a": make(chan int)}}},
		"func":            D(E("$match", D(E("a", func() {})))),
		"NaN":             []map[string]interface{}{{"$match": map[string]interface{}{"a": nanValue()}}},
		"int keys":        []interface{}{map[int]int{1: 2}},
		"not a list":      42,
		"JSON not a list": `{"$match":{}}`,
		"broken JSON":     `[{"$match":`,
	} {
		if got, err := ConvertPipeline(p); err == nil {
			t.Errorf("%s: accepted as %s", name, got)
		} else if !strings.HasPrefix(err.Error(), "nvsprovider: ") {
			t.Errorf("%s: error %q does not say where it comes from", name, err)
		}
	}
}

func nanValue() float64 {
	z := 0.0
	return z / z
}
