// Package listquery implements the list-request semantics of the OpenStack
// Networking (Neutron) v2.0 API over resources that are already rendered as
// JSON objects, so that every list handler (Neutron now, Nova and Glance
// later) filters, sorts, paginates and selects fields the same way.
//
// A handler calls Parse on the request's query string with a Spec describing
// the resource's attributes, then Apply on every resource the caller may see,
// each rendered as a map[string]any (an encoding/json round trip of the wire
// struct: numbers are float64, nested objects are maps, lists are []any):
//
//	q, err := listquery.Parse(r.URL.Query(), networkSpec)
//	if err != nil { return err }
//	page, links, err := listquery.Apply(items, q, publicURL)
//	if err != nil { return err }
//	body := map[string]any{"networks": page}
//	if len(links) > 0 { body["networks_links"] = links }
//
// Show handlers apply the fields parameters with SelectFields.
//
// The rules follow neutron/api/api_common.py (filters, limit, marker,
// page_reverse, sort_key/sort_dir and the pagination links),
// neutron/pecan_wsgi (fields selection), neutron-lib's db/model_query.py and
// neutron's db_base_plugin_v2.py (native pagination and the fixed_ips port
// filter) and neutron/objects/tag.py (tag filters):
//
//   - Filters: each query parameter other than fields, sort_key, sort_dir,
//     limit, marker and page_reverse filters on the attribute it names.
//     Different attributes are AND'ed, repeated values of one attribute are
//     OR'ed. An empty value filters for the empty string
//     (empty-string-filtering). An unknown filter is a 400 (filter-validation)
//     unless Spec.IgnoreUnknownFilters.
//   - Sorting: sort_key and sort_dir are repeated in pairs; the counts must
//     match, each key must be sortable and each direction "asc" or "desc".
//     Spec.Key ("id") ascending is always the final tie-breaker, so with no
//     sort_key lists are ordered by id.
//   - Pagination: limit is an integer >= 0 (0: no limit), capped by
//     Spec.MaxLimit, which also applies when no limit is given. marker is the
//     id of the last item seen and is only honoured with a limit; the page
//     holds the items after it in sort order (before it with
//     page_reverse=True). A marker naming no item is a 404 (see
//     Spec.MarkerNotFound). Pagination links are built as Neutron builds
//     them (see Apply).
//   - Fields: when fields is given, each item keeps only the attributes named
//     by a fields value (unknown names are ignored; id is not forced in).
package listquery

import (
	"fmt"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

// Kind says how the values of a filter on an attribute are coerced and
// compared with the attribute's rendered value.
type Kind int

const (
	// String matches when the attribute is a string equal to one of the
	// filter values.
	String Kind = iota
	// Bool converts each filter value like Neutron's convert_to_boolean
	// (case-insensitive 1/t/true/on/y/yes or 0/f/false/off/n/no, surrounding
	// space ignored; anything else is a 400) and matches a JSON boolean.
	Bool
	// Int converts each filter value like Neutron's convert_to_int (a
	// decimal integer, surrounding space ignored; anything else is a 400) and
	// matches a JSON number.
	Int
	// List matches when the attribute is a list with an element equal to one
	// of the filter values.
	List
	// Tags is a list of strings filtered the way Neutron filters tags. An
	// attribute N of kind Tags answers four filters, each taking repeated
	// and/or comma-separated values: N (the item has all of them), N-any
	// (at least one), not-N (not all of them) and not-N-any (none of them).
	Tags
	// Opaque attributes (nested objects and the like) are not filterable
	// unless their Attr has a Filter.
	Opaque
)

// Match reports whether an item passes a compiled filter.
type Match func(item map[string]any) bool

// FilterFunc compiles the values of the filter named name (the query
// parameter, e.g. "fixed_ips") into a Match. It returns an error built with
// errdefs.Invalidf, naming name, for values it cannot accept, and a nil Match
// when the values put no constraint on the items.
type FilterFunc func(name string, values []string) (Match, error)

// Attr describes one attribute of a resource for list queries.
type Attr struct {
	// Kind says how filter values are coerced and compared.
	Kind Kind
	// Sort allows the attribute as a sort_key (Neutron's is_sort_key).
	Sort bool
	// Filter, when set, replaces the Kind's matching for filters on this
	// attribute; see FixedIPs.
	Filter FilterFunc
}

// Sort is one sort criterion.
type Sort struct {
	// Key is the attribute to sort on.
	Key string
	// Desc sorts in descending order.
	Desc bool
}

// Spec describes a resource's list behaviour.
type Spec struct {
	// Attributes lists the filterable and sortable attributes by name. An
	// attribute that is not listed can still be returned and selected with
	// fields, but not filtered or sorted on.
	Attributes map[string]Attr
	// Key is the primary key attribute: the marker names an item by it, the
	// pagination links carry it, and it breaks sort ties. Default "id".
	Key string
	// DefaultSort is the order when the request has no sort_key (Key
	// ascending always follows it). Neutron's is empty: lists come out by id.
	DefaultSort []Sort
	// MaxLimit caps the page size (Neutron's pagination_max_limit). When it
	// is > 0, a larger limit is lowered to it and a request without a limit
	// (or with limit=0) is paginated at it. <= 0 means no cap.
	MaxLimit int
	// IgnoreUnknownFilters drops filters on attributes that are not in
	// Attributes instead of rejecting them with a 400 (Neutron without the
	// filter-validation extension).
	IgnoreUnknownFilters bool
	// MarkerNotFound, when set, makes the error for a marker that names no
	// item (e.g. Neutron's "Network <id> could not be found." typed
	// NetworkNotFound). If it returns nil the marker is ignored and the first
	// page is returned, as Neutron does for resources stored as versioned
	// objects (subnets, security groups). When nil, Apply returns a 404.
	MarkerNotFound func(marker string) error
}

// Query is a parsed list request. Build it with Parse: Apply uses the Spec
// that Parse was given to interpret Filters and the original query string to
// build the pagination links.
type Query struct {
	// Filters maps each filter parameter to its values, in request order
	// (unknown filters are absent when Spec.IgnoreUnknownFilters).
	Filters map[string][]string
	// Fields lists the fields values as given, or is nil when the request
	// selects no fields (all attributes are returned).
	Fields []string
	// Sorts lists the requested sort criteria (without the Spec.Key
	// tie-breaker or Spec.DefaultSort).
	Sorts []Sort
	// Limit is the page size after Spec.MaxLimit is applied; 0 means no
	// pagination.
	Limit int
	// Marker is the Spec.Key value of the last item of the previous page; it
	// is always "" when Limit is 0.
	Marker string
	// PageReverse asks for the page before the marker (or the last page).
	PageReverse bool

	spec   *Spec
	values url.Values
}

// Reserved query parameters that are never filters.
var reserved = map[string]bool{
	"fields": true, "sort_key": true, "sort_dir": true,
	"limit": true, "marker": true, "page_reverse": true,
}

// Parse reads a Neutron list query. It returns an errdefs.ErrInvalid error
// naming the parameter for an unknown filter (unless
// spec.IgnoreUnknownFilters), a filter value its attribute's kind cannot
// convert, a limit that is not an integer >= 0, an unknown or unsortable
// sort_key, a sort_dir other than asc/desc and unpaired sort_key/sort_dir.
// page_reverse is true only for "true" in any case, as in Neutron; any other
// value is false.
func Parse(q url.Values, spec Spec) (Query, error) {
	sp := spec
	if sp.Key == "" {
		sp.Key = "id"
	}
	out := Query{spec: &sp, values: cloneValues(q)}

	// Filters. Neutron converts key by key in request order and reports
	// unknown keys after the loop; url.Values has no order, so go by name.
	keys := make([]string, 0, len(q))
	for k, vs := range q {
		if !reserved[k] && len(vs) > 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var unknown []string
	for _, k := range keys {
		vs := q[k]
		if _, ok := lookupFilter(&sp, k); !ok {
			unknown = append(unknown, k)
			continue
		}
		if _, err := compileFilter(&sp, k, vs); err != nil {
			return Query{}, err
		}
		if out.Filters == nil {
			out.Filters = make(map[string][]string)
		}
		out.Filters[k] = append([]string(nil), vs...)
	}
	if len(unknown) > 0 && !sp.IgnoreUnknownFilters {
		return Query{}, errdefs.Typed("HTTPBadRequest",
			errdefs.Invalidf("%s is invalid attribute for filtering", pyList(unknown)))
	}

	// limit and marker (webob's GET.get returns the last value).
	if vs := q["limit"]; len(vs) > 0 {
		n, err := parseLimit(vs[len(vs)-1])
		if err != nil {
			return Query{}, err
		}
		out.Limit = n
	}
	if sp.MaxLimit > 0 && (out.Limit == 0 || out.Limit > sp.MaxLimit) {
		out.Limit = sp.MaxLimit
	}
	if vs := q["marker"]; out.Limit > 0 && len(vs) > 0 {
		out.Marker = vs[len(vs)-1]
	}
	if vs := q["page_reverse"]; len(vs) > 0 {
		out.PageReverse = strings.ToLower(vs[len(vs)-1]) == "true"
	}

	sorts, err := parseSorts(q, &sp)
	if err != nil {
		return Query{}, err
	}
	out.Sorts = sorts

	if vs := q["fields"]; len(vs) > 0 {
		out.Fields = append([]string(nil), vs...)
	}
	return out, nil
}

// parseLimit follows api_common._get_limit_param: Python's int() of the
// value, which must be >= 0. Values too large for an int are capped.
func parseLimit(s string) (int, error) {
	t := strings.TrimSpace(s)
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange && !strings.HasPrefix(t, "-") {
			return math.MaxInt, nil
		}
	}
	if err != nil || n < 0 {
		return 0, errdefs.Typed("BadRequest",
			errdefs.Invalidf("Bad limit request: Limit must be an integer 0 or greater and not '%s'.", s))
	}
	if n > math.MaxInt {
		return math.MaxInt, nil
	}
	return int(n), nil
}

// parseSorts follows api_common.get_sorts: empty values are dropped, the
// counts must match, then keys and directions are checked.
func parseSorts(q url.Values, sp *Spec) ([]Sort, error) {
	keys, dirs := nonEmpty(q["sort_key"]), nonEmpty(q["sort_dir"])
	if len(keys) != len(dirs) {
		return nil, errdefs.Typed("HTTPBadRequest",
			errdefs.Invalidf("The number of sort_keys and sort_dirs must be same"))
	}
	var bad []string
	for _, k := range keys {
		if a, ok := sp.Attributes[k]; !ok || !a.Sort {
			bad = append(bad, k)
		}
	}
	if len(bad) > 0 {
		return nil, errdefs.Typed("HTTPBadRequest",
			errdefs.Invalidf("%s is invalid attribute for sort_keys", pyList(bad)))
	}
	bad = nil
	for _, d := range dirs {
		if d != "asc" && d != "desc" {
			bad = append(bad, d)
		}
	}
	if len(bad) > 0 {
		return nil, errdefs.Typed("HTTPBadRequest",
			errdefs.Invalidf("%s is invalid value for sort_dirs, valid value is 'asc' and 'desc'", pyList(bad)))
	}
	if len(keys) == 0 {
		return nil, nil
	}
	out := make([]Sort, len(keys))
	for i := range keys {
		out[i] = Sort{Key: keys[i], Desc: dirs[i] == "desc"}
	}
	return out, nil
}

func nonEmpty(vs []string) []string {
	var out []string
	for _, v := range vs {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// pyList formats names the way Neutron's messages print a Python list.
func pyList(names []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "'%s'", n)
	}
	b.WriteByte(']')
	return b.String()
}

func cloneValues(q url.Values) url.Values {
	out := make(url.Values, len(q))
	for k, vs := range q {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
