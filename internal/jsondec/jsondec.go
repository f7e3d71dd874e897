// Package jsondec decodes JSON request bodies into wire types and turns every
// way a body can be wrong (malformed JSON, a wrong type, an unknown field when
// the API is strict, trailing data, an oversized body) into an
// errdefs.ErrInvalid error whose message names the field, so that no bad
// input can become a 500.
package jsondec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

// MaxBody is the largest request body accepted (1 MiB).
const MaxBody = 1 << 20

// Decode reads one JSON value from r into v. Strict rejects fields v does not
// have. The body must be a single JSON value of at most MaxBody bytes.
func Decode(r io.Reader, v any, strict bool) error {
	data, err := io.ReadAll(io.LimitReader(r, MaxBody+1))
	if err != nil {
		return errdefs.Invalidf("Could not read the request body: %v.", err)
	}
	if len(data) > MaxBody {
		return errdefs.Invalidf("The request body is larger than %d bytes.", MaxBody)
	}
	return DecodeBytes(data, v, strict)
}

// DecodeBytes is Decode on a byte slice.
func DecodeBytes(data []byte, v any, strict bool) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errdefs.Invalidf("The request body is empty; a JSON object is required.")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return errdefs.Invalidf("%s", Problem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return errdefs.Invalidf("The request body has data after its JSON value.")
	}
	return nil
}

// Problem describes a JSON decoding error in words that name the field.
func Problem(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return fmt.Sprintf("Invalid input: expected a JSON %s, got %s.", jsonType(te.Type.Kind().String()), te.Value)
		}
		return fmt.Sprintf("Invalid input for field '%s': expected %s, got %s.", field, jsonType(te.Type.Kind().String()), te.Value)
	case errors.As(err, &se):
		return fmt.Sprintf("Malformed JSON in the request body at byte %d: %v.", se.Offset, se)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return "Malformed JSON in the request body: it ends too early."
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Sprintf("Invalid input: unknown field %s.", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return fmt.Sprintf("Invalid JSON in the request body: %v.", err)
	}
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	}
	return "a " + kind
}
