package nvsprovider

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"time"
)

// Element, Document, Array and Pipeline have the shape of NVSentinel's
// datastore types of the same names; PipelineOptions that of
// client.PipelineOptions. ConvertPipeline accepts these and NVSentinel's own
// (it goes by shape, not by name), so the bridge passes pipelines on as the
// components built them.
type (
	Element struct {
		Key   string      `json:"key"`
		Value interface{} `json:"value"`
	}
	Document        []Element
	Array           []interface{}
	Pipeline        []Document
	PipelineOptions struct {
		Pipeline              interface{}
		EnableExtendedFilters bool
	}
)

// ConvertPipeline turns a pipeline, in any form NVSentinel's components
// build one, into the JSON array of stages sent as the watch's pipeline:
//
//   - nil: no pipeline;
//   - a Pipeline ([]Document of {Key, Value} elements), whose documents keep
//     their key order, values nested as Documents, Arrays, maps, slices;
//   - plain []map[string]interface{}, []interface{}, a single stage;
//   - PipelineOptions (extended filters are always on in the relay: $or,
//     $and and $exists work whether or not it was asked for);
//   - JSON text as json.RawMessage, []byte or string.
//
// Numbers of any Go type become JSON numbers (NVSentinel uses int32 for
// processingStrategy). What cannot be expressed in JSON (channels,
// functions, NaN) is an error naming where it was found. Whether the stages
// mean something is the relay's to judge: it refuses at Start what it does
// not support, with a message naming the stage and path.
func ConvertPipeline(p interface{}) (json.RawMessage, error) {
	if p == nil {
		return nil, nil
	}
	var buf bytes.Buffer
	switch v := p.(type) {
	case json.RawMessage:
		return compactArray(v)
	case []byte:
		return compactArray(v)
	case string:
		return compactArray([]byte(v))
	}
	rv := reflect.ValueOf(p)
	for rv.Kind() == reflect.Ptr || rv.Kind() == reflect.Interface {
		if rv.IsNil() {
			return nil, nil
		}
		rv = rv.Elem()
	}
	if inner, ok := optionsPipeline(rv); ok {
		return ConvertPipeline(inner)
	}
	if rv.Kind() == reflect.Map || isDocument(rv) {
		buf.WriteByte('[') // one stage given on its own
		if err := encode(&buf, rv, "pipeline[0]"); err != nil {
			return nil, err
		}
		buf.WriteByte(']')
		return buf.Bytes(), nil
	}
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return nil, fmt.Errorf("nvsprovider: pipeline: expected a list of stages, got %s", rv.Type())
	}
	if rv.Kind() == reflect.Slice && rv.IsNil() {
		return nil, nil
	}
	if err := encode(&buf, rv, "pipeline"); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func compactArray(b []byte) (json.RawMessage, error) {
	var stages []json.RawMessage
	if err := json.Unmarshal(b, &stages); err != nil {
		return nil, fmt.Errorf("nvsprovider: pipeline: not a JSON array of stages: %v", err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, fmt.Errorf("nvsprovider: pipeline: %v", err)
	}
	return buf.Bytes(), nil
}

// optionsPipeline recognises PipelineOptions by its fields.
func optionsPipeline(rv reflect.Value) (interface{}, bool) {
	if rv.Kind() != reflect.Struct {
		return nil, false
	}
	f := rv.FieldByName("Pipeline")
	if !f.IsValid() || !rv.FieldByName("EnableExtendedFilters").IsValid() || !f.CanInterface() {
		return nil, false
	}
	return f.Interface(), true
}

// isElement: a struct with an exported string Key and a Value.
func isElement(t reflect.Type) bool {
	if t.Kind() != reflect.Struct {
		return false
	}
	k, ok := t.FieldByName("Key")
	if !ok || k.Type.Kind() != reflect.String || k.PkgPath != "" {
		return false
	}
	v, ok := t.FieldByName("Value")
	return ok && v.PkgPath == ""
}

func isDocument(rv reflect.Value) bool {
	return (rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array) && isElement(rv.Type().Elem())
}

var timeType = reflect.TypeOf(time.Time{})

func encode(buf *bytes.Buffer, rv reflect.Value, at string) error {
	for rv.Kind() == reflect.Ptr || rv.Kind() == reflect.Interface {
		if rv.IsNil() {
			buf.WriteString("null")
			return nil
		}
		rv = rv.Elem()
	}
	if !rv.IsValid() {
		buf.WriteString("null")
		return nil
	}
	switch {
	case rv.Type() == timeType:
		b, _ := json.Marshal(rv.Interface().(time.Time).UTC().Format(time.RFC3339Nano))
		buf.Write(b)
		return nil
	case isDocument(rv):
		buf.WriteByte('{')
		for i := 0; i < rv.Len(); i++ {
			if i > 0 {
				buf.WriteByte(',')
			}
			el := rv.Index(i)
			key := el.FieldByName("Key").String()
			kb, _ := json.Marshal(key)
			buf.Write(kb)
			buf.WriteByte(':')
			if err := encode(buf, el.FieldByName("Value"), at+"."+key); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
		return nil
	case isElement(rv.Type()):
		// A lone Element stands for the document holding just it.
		return encode(buf, reflect.ValueOf([]Element{{Key: rv.FieldByName("Key").String(),
			Value: rv.FieldByName("Value").Interface()}}), at)
	}
	if inner, ok := optionsPipeline(rv); ok {
		return encode(buf, reflect.ValueOf(inner), at)
	}
	switch rv.Kind() {
	case reflect.Bool:
		if rv.Bool() {
			buf.WriteString("true")
		} else {
			buf.WriteString("false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		fmt.Fprintf(buf, "%d", rv.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		fmt.Fprintf(buf, "%d", rv.Uint())
	case reflect.Float32, reflect.Float64:
		f := rv.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("nvsprovider: %s: %v is not a JSON number", at, f)
		}
		b, _ := json.Marshal(f)
		buf.Write(b)
	case reflect.String:
		b, _ := json.Marshal(rv.String())
		buf.Write(b)
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			buf.WriteString("[]")
			return nil
		}
		buf.WriteByte('[')
		for i := 0; i < rv.Len(); i++ {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := encode(buf, rv.Index(i), fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return fmt.Errorf("nvsprovider: %s: map keys must be strings, not %s", at, rv.Type().Key())
		}
		keys := make([]string, 0, rv.Len())
		for _, k := range rv.MapKeys() {
			keys = append(keys, k.String())
		}
		sort.Strings(keys) // the same pipeline always reads the same
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			buf.Write(kb)
			buf.WriteByte(':')
			if err := encode(buf, rv.MapIndex(reflect.ValueOf(k).Convert(rv.Type().Key())), at+"."+k); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	case reflect.Struct:
		if !rv.CanInterface() {
			return fmt.Errorf("nvsprovider: %s: unexported %s", at, rv.Type())
		}
		b, err := json.Marshal(rv.Interface())
		if err != nil {
			return fmt.Errorf("nvsprovider: %s: %v", at, err)
		}
		buf.Write(b)
	default:
		return fmt.Errorf("nvsprovider: %s: a %s cannot be part of a pipeline", at, rv.Type())
	}
	return nil
}
