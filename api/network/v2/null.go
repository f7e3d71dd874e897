package v2

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// NullString is a JSON string that may be null: Set says the attribute was
// present, Valid that it was not null.
type NullString struct {
	Value string
	Valid bool
}

// UnmarshalJSON implements json.Unmarshaler.
func (n *NullString) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = NullString{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*n = NullString{Value: s, Valid: true}
	return nil
}

// NullInt is a JSON integer that may be null (or a numeric string, which
// Neutron accepts for port ranges).
type NullInt struct {
	Value int
	Valid bool
}

// UnmarshalJSON implements json.Unmarshaler.
func (n *NullInt) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = NullInt{}
		return nil
	}
	var i int
	if err := json.Unmarshal(b, &i); err == nil {
		*n = NullInt{Value: i, Valid: true}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("expected an integer, got %s", b)
	}
	i, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("expected an integer, got %q", s)
	}
	*n = NullInt{Value: i, Valid: true}
	return nil
}

// NullStringOrInt is a protocol: a name, a number (as number or string), or null.
type NullStringOrInt struct {
	Value string
	Valid bool
}

// UnmarshalJSON implements json.Unmarshaler.
func (n *NullStringOrInt) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = NullStringOrInt{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*n = NullStringOrInt{Value: s, Valid: true}
		return nil
	}
	var i int
	if err := json.Unmarshal(b, &i); err != nil {
		return fmt.Errorf("expected a protocol name or number, got %s", b)
	}
	*n = NullStringOrInt{Value: strconv.Itoa(i), Valid: true}
	return nil
}

// Int is an integer attribute that also accepts a numeric string, as
// Neutron's convert_to_int does (openstacksdk sends "mtu": "1400").
type Int int

// UnmarshalJSON implements json.Unmarshaler.
func (n *Int) UnmarshalJSON(b []byte) error {
	var v NullInt
	if err := v.UnmarshalJSON(b); err != nil {
		return err
	}
	if !v.Valid {
		return fmt.Errorf("expected an integer, got null")
	}
	*n = Int(v.Value)
	return nil
}

// FieldError is a request attribute that is present but invalid; its
// message is Neutron's "Invalid input for <field>. Reason: <reason>.".
type FieldError struct {
	Field, Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("Invalid input for %s. Reason: %s.", e.Field, e.Reason)
}

// Nullable is implemented by the attribute types that tell an explicit JSON
// null (their zero value) from an absent attribute (a nil pointer).
// encoding/json sets a pointer field to nil for null without calling
// UnmarshalJSON, so a decoder that must see the null sets such fields to a
// new zero value itself (see internal/networkapi).
type Nullable interface{ JSONNull() }

// JSONNull implements Nullable.
func (*NullString) JSONNull() {}

// JSONNull implements Nullable.
func (*NullInt) JSONNull() {}

// JSONNull implements Nullable.
func (*NullStringOrInt) JSONNull() {}

// JSONNull implements Nullable.
func (*NullGateway) JSONNull() {}

// JSONNull implements Nullable.
func (*NullRoutes) JSONNull() {}
