package jsondec_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/jsondec"
)

type sample struct {
	Name    *string           `json:"name"`
	Enabled *bool             `json:"enabled"`
	Count   int               `json:"count"`
	Tags    []string          `json:"tags"`
	Nested  *struct{ ID int } `json:"nested"`
}

func TestDecode(t *testing.T) {
	cases := []struct {
		body, want string
		strict     bool
	}{
		{`{"name": "x", "enabled": true, "count": 2}`, "", true},
		{``, "empty", false},
		{`{"name": `, "ends too early", false},
		{`{"name": 1}`, "field 'name': expected a string, got number", false},
		{`{"enabled": "yes"}`, "field 'enabled': expected a boolean", false},
		{`{"count": 1.5}`, "field 'count'", false},
		{`{"nested": {"ID": "a"}}`, "field 'nested.ID'", false},
		{`{"bogus": 1}`, `unknown field "bogus"`, true},
		{`{"bogus": 1}`, "", false},
		{`{} {}`, "data after", false},
		{`{]`, "Malformed JSON", false},
	}
	for _, c := range cases {
		var v sample
		err := jsondec.DecodeBytes([]byte(c.body), &v, c.strict)
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: unexpected error %v", c.body, err)
			}
			continue
		}
		if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an invalid error containing %q", c.body, err, c.want)
		}
	}
	big := strings.NewReader(`{"name": "` + strings.Repeat("a", jsondec.MaxBody) + `"}`)
	if err := jsondec.Decode(big, &sample{}, false); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("oversized body: %v", err)
	}
}

// FuzzDecode: any input decodes or fails with ErrInvalid; never a panic or
// another kind of error.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"name": "x"}`, `{"tags": ["a"]}`, `{"nested": {"ID": 1}}`, `[`, `nul`, `{"enabled": null}`} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, strict bool) {
		var v sample
		if err := jsondec.DecodeBytes(body, &v, strict); err != nil && !errors.Is(err, errdefs.ErrInvalid) {
			t.Fatalf("%q: error %v is not ErrInvalid", body, err)
		}
	})
}
