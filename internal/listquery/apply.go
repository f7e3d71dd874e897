package listquery

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

// Link is one pagination link, emitted as "<collection>_links".
type Link struct {
	// Rel is "next" or "previous".
	Rel string `json:"rel"`
	// Href is the URL of that page.
	Href string `json:"href"`
}

// sortVal is a rendered value reduced to what ordering needs.
type sortVal struct {
	rank uint8 // 0 null, 1 boolean, 2 number, 3 string, 4 other
	b    bool
	f    float64
	s    string
}

func toSortVal(v any) sortVal {
	switch x := v.(type) {
	case nil:
		return sortVal{}
	case string:
		return sortVal{rank: 3, s: x}
	case bool:
		return sortVal{rank: 1, b: x}
	case float64:
		return sortVal{rank: 2, f: x}
	}
	if f, ok := toFloat(v); ok {
		return sortVal{rank: 2, f: f}
	}
	return sortVal{rank: 4}
}

// Apply filters items, sorts them, cuts out the requested page, and selects
// q.Fields, following Neutron's native (database) pagination:
//
//   - The order is q.Sorts (or Spec.DefaultSort), then Spec.Key ascending.
//     Values compare as null < booleans (false < true) < numbers < strings
//     (bytewise) < anything else; a missing attribute is null.
//   - With a limit and a marker, the marker item is looked up among all items
//     (it need not pass the filters) and the page holds the first Limit
//     filtered items after it in sort order, or with PageReverse the last
//     Limit items before it. Without a marker, PageReverse gives the last
//     page. A marker naming no item is Spec.MarkerNotFound's error, by
//     default an errdefs.ErrNotFound error.
//   - Without a limit the marker is ignored and PageReverse returns the whole
//     list in reverse order, as Neutron's database pagination does.
//   - links (only with a limit) has "next" unless the page is short and not
//     reversed, and "previous" unless the page is short and reversed. Each is
//     base (its query replaced) with the request's query, marker set to the
//     key of the page's last (next) or first (previous) item, and
//     page_reverse removed (next) or set to True (previous); an empty page's
//     links carry no marker.
//
// Apply neither modifies items nor the maps in it. Without q.Fields the page
// holds the caller's maps; with q.Fields it holds new maps.
func Apply(items []map[string]any, q Query, base *url.URL) (page []map[string]any, links []Link, err error) {
	sp := q.spec
	if sp == nil {
		sp = &Spec{}
	}
	key := sp.Key
	if key == "" {
		key = "id"
	}
	matches, err := compileFilters(sp, q.Filters)
	if err != nil {
		return nil, nil, err
	}

	sorts := q.Sorts
	if len(sorts) == 0 {
		sorts = sp.DefaultSort
	}
	if !slices.ContainsFunc(sorts, func(s Sort) bool { return s.Key == key }) {
		sorts = append(slices.Clip(sorts), Sort{Key: key})
	}
	nk := len(sorts)

	limit := q.Limit
	if limit < 0 {
		limit = 0
	}
	var marker []sortVal // the marker item's sort values
	if limit > 0 && q.Marker != "" {
		for _, it := range items {
			if keyString(it[key]) == q.Marker {
				marker = make([]sortVal, nk)
				for i, s := range sorts {
					marker[i] = toSortVal(it[s.Key])
				}
				break
			}
		}
		if marker == nil {
			if sp.MarkerNotFound != nil {
				err = sp.MarkerNotFound(q.Marker)
			} else {
				err = errdefs.Typed("NotFound", errdefs.NotFoundf("Marker %s could not be found.", q.Marker))
			}
			if err != nil {
				return nil, nil, err
			}
		}
	}

	// Filter, extracting the sort values of each kept item once into vals
	// (nk per item); ordering then works on int32 indices into kept, which
	// are much cheaper to move than items.
	kept := make([]map[string]any, 0, len(items))
	vals := make([]sortVal, 0, len(items)*nk)
next:
	for _, it := range items {
		for _, m := range matches {
			if !m(it) {
				continue next
			}
		}
		kept = append(kept, it)
		for _, s := range sorts {
			vals = append(vals, toSortVal(it[s.Key]))
		}
	}
	desc := make([]bool, nk)
	for i, s := range sorts {
		desc[i] = s.Desc
	}
	// cmp orders two items' sort values; the marker search uses it too.
	cmp := func(a, b []sortVal) int {
		for i := range desc {
			c := compareVal(&a[i], &b[i])
			if c != 0 {
				if desc[i] {
					return -c
				}
				return c
			}
		}
		return 0
	}
	at := func(i int32) []sortVal { return vals[int(i)*nk : int(i+1)*nk] }
	// order is the full order: sort values, then input order (stability).
	order := func(a, b int32) int {
		if c := cmp(at(a), at(b)); c != 0 {
			return c
		}
		return int(a) - int(b)
	}

	var sel []int32
	if limit == 0 {
		sel = make([]int32, len(kept))
		for i := range sel {
			sel[i] = int32(i)
		}
		slices.SortFunc(sel, order)
		if q.PageReverse {
			slices.Reverse(sel)
		}
	} else {
		// The page is the limit first items after the marker (or the limit
		// last items before it with page_reverse): select them in one pass
		// instead of sorting everything.
		after := func(int32) bool { return true }
		switch {
		case marker != nil && !q.PageReverse:
			after = func(i int32) bool { return cmp(at(i), marker) > 0 }
		case marker != nil:
			after = func(i int32) bool { return cmp(at(i), marker) < 0 }
		}
		sel = selectK(len(kept), after, limit, order, q.PageReverse)
	}

	page = make([]map[string]any, len(sel))
	for i, j := range sel {
		page[i] = kept[j]
	}
	if limit > 0 {
		links = pageLinks(page, q, key, limit, base)
	}
	if q.Fields != nil {
		for i, it := range page {
			page[i] = project(it, q.Fields)
		}
	}
	return page, links, nil
}

// pageLinks is api_common.get_pagination_links.
func pageLinks(page []map[string]any, q Query, key string, limit int, base *url.URL) []Link {
	var links []Link
	short := len(page) < limit
	if !(short && !q.PageReverse) {
		v := q.encode()
		v.Del("marker")
		if len(page) > 0 {
			setMarker(v, page[len(page)-1][key])
		}
		v.Del("page_reverse")
		links = append(links, Link{Rel: "next", Href: href(base, v)})
	}
	if !(short && q.PageReverse) {
		v := q.encode()
		v.Del("marker")
		if len(page) > 0 {
			setMarker(v, page[0][key])
		}
		v.Set("page_reverse", "True")
		links = append(links, Link{Rel: "previous", Href: href(base, v)})
	}
	return links
}

func setMarker(v url.Values, id any) {
	if id != nil {
		v.Set("marker", keyString(id))
	}
}

// keyString is the marker form of a key value ("" for none).
func keyString(id any) string {
	switch id := id.(type) {
	case nil:
		return ""
	case string:
		return id
	}
	return fmt.Sprint(id)
}

func href(base *url.URL, v url.Values) string {
	var u url.URL
	if base != nil {
		u = *base
	}
	u.RawQuery = v.Encode()
	u.ForceQuery = false
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// encode returns the request's query string values (a copy), rebuilding them
// for a Query not made by Parse.
func (q Query) encode() url.Values {
	if q.values != nil {
		return cloneValues(q.values)
	}
	v := url.Values{}
	for k, vs := range q.Filters {
		v[k] = append([]string(nil), vs...)
	}
	if len(q.Fields) > 0 {
		v["fields"] = append([]string(nil), q.Fields...)
	}
	for _, s := range q.Sorts {
		v.Add("sort_key", s.Key)
		if s.Desc {
			v.Add("sort_dir", "desc")
		} else {
			v.Add("sort_dir", "asc")
		}
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return v
}

// SelectFields applies the fields parameters of a show (single resource)
// request to a rendered item the way Apply does for lists: with fields given,
// it returns a new map with only the attributes they name; otherwise item.
func SelectFields(item map[string]any, q url.Values) map[string]any {
	if fields := q["fields"]; len(fields) > 0 {
		return project(item, fields)
	}
	return item
}

// project keeps the attributes of it named in fields (neutron's
// UserFilterHook: unknown names are ignored, id is not added).
func project(it map[string]any, fields []string) map[string]any {
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		if v, ok := it[f]; ok {
			out[f] = v
		}
	}
	return out
}

// selectK returns, sorted by order, the k first (or with last the k last)
// of the indices 0..n-1 that pass keep. It keeps a heap whose root is the
// worst index kept so far.
func selectK(n int, keep func(int32) bool, k int, order func(a, b int32) int, last bool) []int32 {
	worse := func(a, b int32) bool {
		if last {
			return order(a, b) < 0
		}
		return order(a, b) > 0
	}
	h := make([]int32, 0, min(k, n, 1024))
	for i := range n {
		x := int32(i)
		if !keep(x) {
			continue
		}
		if len(h) < k {
			h = append(h, x)
			for j := len(h) - 1; j > 0; {
				p := (j - 1) / 2
				if !worse(h[j], h[p]) {
					break
				}
				h[j], h[p] = h[p], h[j]
				j = p
			}
			continue
		}
		if !worse(h[0], x) {
			continue
		}
		h[0] = x
		for j := 0; ; {
			w, l := j, 2*j+1
			if l < len(h) && worse(h[l], h[w]) {
				w = l
			}
			if r := l + 1; r < len(h) && worse(h[r], h[w]) {
				w = r
			}
			if w == j {
				break
			}
			h[j], h[w] = h[w], h[j]
			j = w
		}
	}
	slices.SortFunc(h, order)
	return h
}

// compareVal is a total preorder on rendered JSON values: null < booleans
// (false < true) < numbers (NaN first) < strings (bytewise) < anything else,
// which compare equal.
func compareVal(a, b *sortVal) int {
	if a.rank != b.rank {
		return int(a.rank) - int(b.rank)
	}
	switch a.rank {
	case 1:
		switch {
		case a.b == b.b:
			return 0
		case !a.b:
			return -1
		}
		return 1
	case 2:
		x, y := a.f, b.f
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		case x == y:
			return 0
		}
		switch xn, yn := x != x, y != y; {
		case xn && yn:
			return 0
		case xn:
			return -1
		}
		return 1
	case 3:
		return strings.Compare(a.s, b.s)
	}
	return 0
}

// compare is compareVal on raw values.
func compare(a, b any) int {
	x, y := toSortVal(a), toSortVal(b)
	return compareVal(&x, &y)
}
