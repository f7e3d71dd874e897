package listquery

import (
	"errors"
	"net/url"
	"reflect"
	"slices"
	"testing"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

// fuzzItems are testItems plus awkward ones: no id, a numeric id, a
// duplicate id, wrong types everywhere and a nil map.
func fuzzItems(t testing.TB) []map[string]any {
	items := testItems(t)
	return append(items,
		map[string]any{"name": "noid", "tags": "red", "fixed_ips": "10.0.0.5"},
		map[string]any{"id": 7.0, "name": 3.0, "admin_state_up": "true", "mtu": "1500"},
		map[string]any{"id": "p3", "name": []any{"b"}, "security_groups": []any{1.0, nil, "sg1"},
			"fixed_ips": []any{nil, "x", map[string]any{"ip_address": 5.0}}},
		nil,
	)
}

// FuzzParseApply proves that no query string makes Parse or Apply panic or
// fail with anything but ErrInvalid or ErrNotFound, and that every page is a
// contiguous run, at most Limit long, of the filtered and sorted list.
func FuzzParseApply(f *testing.F) {
	for _, s := range []string{
		"", "name=b&name=", "limit=2&marker=p2", "limit=2&marker=p5&page_reverse=True",
		"limit=-1", "limit=abc", "limit=99999999999999999999", "marker=p9&limit=1",
		"sort_key=name&sort_dir=desc&sort_key=mtu&sort_dir=asc", "sort_key=name",
		"sort_key=bogus&sort_dir=asc", "sort_dir=up&sort_key=id", "fields=id&fields=name",
		"fields=", "admin_state_up=maybe", "mtu=1.5", "tags=red,blue&not-tags-any=green",
		"fixed_ips=ip_address%3D10.0.0.5&fixed_ips=subnet_id%3Ds1", "fixed_ips=bad",
		"fixed_ips=ip_address_substr%3D10", "bogus=1", "page_reverse=true", "limit=0&page_reverse=TRUE",
		"security_groups=sg1&limit=1&marker=7", "id=p3&limit=1&marker=p3&fields=name",
	} {
		f.Add(s, int8(0), false)
		f.Add(s, int8(3), true)
	}
	items := fuzzItems(f)
	f.Fuzz(func(t *testing.T, raw string, maxLimit int8, ignoreUnknown bool) {
		vals, _ := url.ParseQuery(raw) // keeps what parsed
		spec := portSpec
		spec.MaxLimit = int(maxLimit)
		spec.IgnoreUnknownFilters = ignoreUnknown
		q, err := Parse(vals, spec)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("Parse(%q): %v is not ErrInvalid", raw, err)
			}
			return
		}
		base := &url.URL{Scheme: "https", Host: "h", Path: "/v2.0/ports", RawQuery: "x=1"}
		page, links, err := Apply(items, q, base)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalid) && !errors.Is(err, errdefs.ErrNotFound) {
				t.Fatalf("Apply(%q): unexpected error %v", raw, err)
			}
			return
		}
		if q.Limit > 0 && len(page) > q.Limit {
			t.Fatalf("Apply(%q): %d items over limit %d", raw, len(page), q.Limit)
		}
		if q.Limit == 0 && links != nil {
			t.Fatalf("Apply(%q): links without a limit", raw)
		}
		for _, l := range links {
			u, err := url.Parse(l.Href)
			if err != nil || (l.Rel != "next" && l.Rel != "previous") || u.Host != "h" {
				t.Fatalf("Apply(%q): bad link %v", raw, l)
			}
			// Following a link never fails on parsing.
			lv, err := url.ParseQuery(u.RawQuery)
			if err != nil {
				t.Fatalf("Apply(%q): link query %q: %v", raw, u.RawQuery, err)
			}
			if _, err := Parse(lv, spec); err != nil {
				t.Fatalf("Apply(%q): link %s does not parse: %v", raw, l.Href, err)
			}
		}
		if q.Fields != nil {
			for _, it := range page {
				for k := range it {
					if !slices.Contains(q.Fields, k) {
						t.Fatalf("Apply(%q): field %q not selected", raw, k)
					}
				}
			}
		}

		// The unprojected page is a contiguous run of the full sorted list.
		q1 := q
		q1.Fields = nil
		page1, _, err := Apply(items, q1, base)
		if err != nil || len(page1) != len(page) {
			t.Fatalf("Apply(%q) without fields: %d items, %v", raw, len(page1), err)
		}
		qAll := q1
		qAll.Limit, qAll.Marker, qAll.PageReverse = 0, "", false
		all, _, err := Apply(items, qAll, base)
		if err != nil {
			t.Fatalf("Apply(%q) unpaginated: %v", raw, err)
		}
		if q.Limit == 0 && q.PageReverse {
			slices.Reverse(all)
		}
		if len(page1) > 0 {
			start := slices.IndexFunc(all, func(it map[string]any) bool { return sameMap(it, page1[0]) })
			if start < 0 || start+len(page1) > len(all) {
				t.Fatalf("Apply(%q): page is not in the full list", raw)
			}
			for i := range page1 {
				if !sameMap(all[start+i], page1[i]) {
					t.Fatalf("Apply(%q): page is not contiguous", raw)
				}
			}
		}
	})
}

func sameMap(a, b map[string]any) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}
