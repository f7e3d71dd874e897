package listquery

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

// portSpec is shaped like Neutron's port and network attribute maps.
var portSpec = Spec{
	Attributes: map[string]Attr{
		"id":              {Kind: String, Sort: true},
		"name":            {Kind: String, Sort: true},
		"project_id":      {Kind: String, Sort: true},
		"tenant_id":       {Kind: String, Sort: true},
		"network_id":      {Kind: String, Sort: true},
		"device_id":       {Kind: String, Sort: true},
		"admin_state_up":  {Kind: Bool, Sort: true},
		"mtu":             {Kind: Int, Sort: true},
		"security_groups": {Kind: List},
		"tags":            {Kind: Tags},
		"fixed_ips":       {Kind: Opaque, Filter: FixedIPs},
		"binding:profile": {Kind: Opaque},
	},
}

// render round-trips v through encoding/json, as handlers render items.
func render(t testing.TB, v any) []map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

type fip struct {
	SubnetID  string `json:"subnet_id"`
	IPAddress string `json:"ip_address"`
}

type port struct {
	ID             string   `json:"id"`
	Name           *string  `json:"name,omitempty"`
	NetworkID      string   `json:"network_id"`
	DeviceID       string   `json:"device_id"`
	AdminStateUp   bool     `json:"admin_state_up"`
	MTU            int      `json:"mtu"`
	SecurityGroups []string `json:"security_groups"`
	Tags           []string `json:"tags"`
	FixedIPs       []fip    `json:"fixed_ips"`
}

func sp(s string) *string { return &s }

// testItems: ids p1..p6 deliberately out of order in the slice.
func testItems(t testing.TB) []map[string]any {
	return render(t, []port{
		{ID: "p3", Name: sp("b"), NetworkID: "n1", DeviceID: "", AdminStateUp: true, MTU: 1500,
			SecurityGroups: []string{"sg1"}, Tags: []string{"red", "blue"},
			FixedIPs: []fip{{"s1", "10.0.0.5"}}},
		{ID: "p1", Name: sp("a"), NetworkID: "n1", DeviceID: "d1", AdminStateUp: false, MTU: 1450,
			SecurityGroups: []string{"sg1", "sg2"}, Tags: []string{"red"},
			FixedIPs: []fip{{"s1", "10.0.0.6"}, {"s2", "10.0.1.7"}}},
		{ID: "p5", Name: sp("b"), NetworkID: "n2", DeviceID: "d2", AdminStateUp: true, MTU: 1500,
			SecurityGroups: []string{}, Tags: []string{"green"},
			FixedIPs: []fip{{"s3", "192.168.0.10"}}},
		{ID: "p2", NetworkID: "n2", DeviceID: "d1", AdminStateUp: true, MTU: 9000,
			SecurityGroups: []string{"sg2"}, Tags: []string{},
			FixedIPs: []fip{}},
		{ID: "p6", Name: sp("A"), NetworkID: "n1", DeviceID: "", AdminStateUp: false, MTU: 1500,
			SecurityGroups: nil, Tags: []string{"blue", "green", "red"},
			FixedIPs: []fip{{"s2", "10.0.1.8"}}},
		{ID: "p4", Name: sp(""), NetworkID: "n3", DeviceID: "d3", AdminStateUp: true, MTU: 1450,
			SecurityGroups: []string{"sg3"}, Tags: nil,
			FixedIPs: []fip{{"s1", "10.0.0.50"}}},
	})
}

func ids(page []map[string]any) string {
	var out []string
	for _, it := range page {
		out = append(out, fmt.Sprint(it["id"]))
	}
	return strings.Join(out, ",")
}

func mustQuery(t testing.TB, raw string) url.Values {
	t.Helper()
	v, err := url.ParseQuery(raw)
	if err != nil {
		t.Fatalf("bad test query %q: %v", raw, err)
	}
	return v
}

var baseURL = &url.URL{Scheme: "http", Host: "nimbo:9696", Path: "/v2.0/ports"}

func run(t testing.TB, items []map[string]any, spec Spec, raw string) ([]map[string]any, []Link, error) {
	t.Helper()
	q, err := Parse(mustQuery(t, raw), spec)
	if err != nil {
		return nil, nil, err
	}
	return Apply(items, q, baseURL)
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, query string
		spec        *Spec
		want        string // substring of the message; "" = no error
	}{
		{"unknown filter", "bogus=1", nil, "['bogus'] is invalid attribute for filtering"},
		{"unknown filters sorted", "zz=1&aa=2&name=x", nil, "['aa', 'zz'] is invalid attribute for filtering"},
		{"unknown filter ignored", "bogus=1", &Spec{Attributes: portSpec.Attributes, IgnoreUnknownFilters: true}, ""},
		{"opaque attribute not filterable", "binding:profile=x", nil, "['binding:profile'] is invalid attribute for filtering"},
		{"reserved keys are not filters", "fields=id&sort_key=id&sort_dir=asc&limit=1&marker=p1&page_reverse=x", nil, ""},
		{"tag variants", "tags=a&tags-any=b&not-tags=c&not-tags-any=d", nil, ""},
		{"tag variants need a Tags attribute", "name-any=x", nil, "['name-any'] is invalid attribute for filtering"},
		{"not- prefix needs a Tags attribute", "not-name=x", nil, "['not-name'] is invalid attribute for filtering"},
		{"bool ok", "admin_state_up=True&admin_state_up=false&admin_state_up=1&admin_state_up=%20off%20&admin_state_up=YES", nil, ""},
		{"bool bad", "admin_state_up=maybe", nil, "Invalid input for admin_state_up. Reason: 'maybe' cannot be converted to boolean."},
		{"bool empty", "admin_state_up=", nil, "admin_state_up"},
		{"int ok", "mtu=1500&mtu=%2B9000&mtu=99999999999999999999999", nil, ""},
		{"int bad", "mtu=15.0", nil, "Invalid input for mtu. Reason: '15.0' is not an integer."},
		{"fixed_ips bad", "fixed_ips=10.0.0.5", nil, "Invalid input for fixed_ips. Reason: '10.0.0.5' is not of the form <key>=[value]."},
		{"fixed_ips empty key", "fixed_ips=%3D10.0.0.5", nil, "fixed_ips"},
		{"fixed_ips empty", "fixed_ips=", nil, "fixed_ips"},
		{"conversion error wins over unknown", "bogus=1&admin_state_up=x", nil, "admin_state_up"},
		{"limit letters", "limit=abc", nil, "Bad limit request: Limit must be an integer 0 or greater and not 'abc'."},
		{"limit negative", "limit=-1", nil, "Bad limit request"},
		{"limit huge negative", "limit=-99999999999999999999", nil, "Bad limit request"},
		{"limit empty", "limit=", nil, "Bad limit request: Limit must be an integer 0 or greater and not ''."},
		{"limit float", "limit=1.5", nil, "limit"},
		{"limit last value wins", "limit=abc&limit=2", nil, ""},
		{"sort key without dir", "sort_key=name", nil, "The number of sort_keys and sort_dirs must be same"},
		{"sort dir without key", "sort_dir=asc", nil, "sort_keys and sort_dirs"},
		{"sort empty values dropped", "sort_key=&sort_dir=", nil, ""},
		{"sort unknown key", "sort_key=bogus&sort_dir=asc", nil, "['bogus'] is invalid attribute for sort_keys"},
		{"sort unsortable key", "sort_key=tags&sort_dir=asc", nil, "['tags'] is invalid attribute for sort_keys"},
		{"sort bad dir", "sort_key=name&sort_dir=ASC", nil, "['ASC'] is invalid value for sort_dirs, valid value is 'asc' and 'desc'"},
		{"sort ok", "sort_key=name&sort_dir=asc&sort_key=id&sort_dir=desc", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := portSpec
			if tt.spec != nil {
				spec = *tt.spec
			}
			_, err := Parse(mustQuery(t, tt.query), spec)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Parse(%q) = %v, want no error", tt.query, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse(%q) = nil, want error containing %q", tt.query, tt.want)
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("Parse(%q) error %v is not ErrInvalid", tt.query, err)
			}
			if !strings.Contains(errdefs.Message(err), tt.want) {
				t.Errorf("Parse(%q) message %q, want it to contain %q", tt.query, errdefs.Message(err), tt.want)
			}
			if errdefs.TypeOf(err) == "" {
				t.Errorf("Parse(%q) error has no Neutron fault type", tt.query)
			}
		})
	}
}

func TestParseValues(t *testing.T) {
	withMax := portSpec
	withMax.MaxLimit = 100
	tests := []struct {
		name, query string
		spec        Spec
		limit       int
		marker      string
		reverse     bool
		sorts       []Sort
		fields      []string
	}{
		{name: "nothing", query: "", spec: portSpec},
		{name: "limit", query: "limit=5", spec: portSpec, limit: 5},
		{name: "limit spaces", query: "limit=%205%20", spec: portSpec, limit: 5},
		{name: "limit plus", query: "limit=%2B5", spec: portSpec, limit: 5},
		{name: "limit 0 is no limit", query: "limit=0", spec: portSpec},
		{name: "limit huge", query: "limit=99999999999999999999", spec: portSpec, limit: math.MaxInt},
		{name: "last limit wins", query: "limit=3&limit=7", spec: portSpec, limit: 7},
		{name: "above max", query: "limit=500", spec: withMax, limit: 100},
		{name: "huge above max", query: "limit=99999999999999999999", spec: withMax, limit: 100},
		{name: "below max", query: "limit=5", spec: withMax, limit: 5},
		{name: "max without limit", query: "", spec: withMax, limit: 100},
		{name: "max with limit 0", query: "limit=0", spec: withMax, limit: 100},
		{name: "marker needs limit", query: "marker=p1", spec: portSpec},
		{name: "marker with limit", query: "marker=p1&limit=2", spec: portSpec, limit: 2, marker: "p1"},
		{name: "marker with max limit", query: "marker=p1", spec: withMax, limit: 100, marker: "p1"},
		{name: "last marker wins", query: "marker=p1&marker=p2&limit=2", spec: portSpec, limit: 2, marker: "p2"},
		{name: "page_reverse True", query: "page_reverse=True", spec: portSpec, reverse: true},
		{name: "page_reverse TRUE", query: "page_reverse=TRUE", spec: portSpec, reverse: true},
		{name: "page_reverse 1 is false", query: "page_reverse=1", spec: portSpec},
		{name: "page_reverse junk is false", query: "page_reverse=junk", spec: portSpec},
		{name: "page_reverse last wins", query: "page_reverse=true&page_reverse=false", spec: portSpec},
		{name: "sorts", query: "sort_key=name&sort_dir=desc&sort_key=id&sort_dir=asc", spec: portSpec,
			sorts: []Sort{{"name", true}, {"id", false}}},
		{name: "fields", query: "fields=id&fields=name&fields=bogus", spec: portSpec, fields: []string{"id", "name", "bogus"}},
		{name: "fields empty", query: "fields=", spec: portSpec, fields: []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := Parse(mustQuery(t, tt.query), tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			if q.Limit != tt.limit || q.Marker != tt.marker || q.PageReverse != tt.reverse {
				t.Errorf("limit, marker, reverse = %d, %q, %v; want %d, %q, %v",
					q.Limit, q.Marker, q.PageReverse, tt.limit, tt.marker, tt.reverse)
			}
			if !reflect.DeepEqual(q.Sorts, tt.sorts) {
				t.Errorf("sorts = %v, want %v", q.Sorts, tt.sorts)
			}
			if !reflect.DeepEqual(q.Fields, tt.fields) {
				t.Errorf("fields = %#v, want %#v", q.Fields, tt.fields)
			}
		})
	}
}

func TestParseFilters(t *testing.T) {
	q, err := Parse(mustQuery(t, "name=a&name=&limit=2&fields=id&network_id=n1"), portSpec)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"name": {"a", ""}, "network_id": {"n1"}}
	if !reflect.DeepEqual(q.Filters, want) {
		t.Errorf("Filters = %v, want %v", q.Filters, want)
	}
	ign := portSpec
	ign.IgnoreUnknownFilters = true
	q, err = Parse(mustQuery(t, "bogus=1&name=a"), ign)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string][]string{"name": {"a"}}; !reflect.DeepEqual(q.Filters, want) {
		t.Errorf("Filters = %v, want %v", q.Filters, want)
	}
}

func TestFilters(t *testing.T) {
	items := testItems(t)
	tests := []struct{ query, want string }{
		{"", "p1,p2,p3,p4,p5,p6"},
		{"name=b", "p3,p5"},
		{"name=a&name=A", "p1,p6"},     // repeated key: OR
		{"name=b&network_id=n2", "p5"}, // different keys: AND
		{"name=", "p4"},                // empty value matches "" only, not a missing name
		{"device_id=", "p3,p6"},        // Neutron's unbound-ports example
		{"name=nope", ""},
		{"id=p1&id=p4", "p1,p4"},
		{"admin_state_up=false", "p1,p6"},
		{"admin_state_up=True", "p2,p3,p4,p5"},
		{"admin_state_up=0&admin_state_up=1", "p1,p2,p3,p4,p5,p6"},
		{"mtu=1500", "p3,p5,p6"},
		{"mtu=1450&mtu=9000", "p1,p2,p4"},
		{"mtu=99999999999999999999", ""},
		{"security_groups=sg2", "p1,p2"},
		{"security_groups=sg3&security_groups=sg1", "p1,p3,p4"},
		{"tags=red", "p1,p3,p6"},
		{"tags=red,blue", "p3,p6"},
		{"tags=red&tags=blue", "p3,p6"},
		{"tags=red,blue,green", "p6"},
		{"tags-any=green,blue", "p3,p5,p6"},
		{"tags-any=green&tags-any=nope", "p5,p6"},
		{"not-tags=red,blue", "p1,p2,p4,p5"},
		{"not-tags-any=red&not-tags-any=green", "p2,p4"},
		{"tags=red&not-tags=blue", "p1"},
		{"tags=", ""},
		{"not-tags-any=", "p1,p2,p3,p4,p5,p6"},
		{"tags=red,", ""}, // the empty tag must be present too, as in Neutron
		{"fixed_ips=ip_address%3D10.0.0.5", "p3"},
		{"fixed_ips=ip_address%3D10.0.0.5&fixed_ips=ip_address%3D10.0.1.8", "p3,p6"},
		{"fixed_ips=subnet_id%3Ds1", "p1,p3,p4"},
		{"fixed_ips=subnet_id%3Ds2&fixed_ips=ip_address%3D10.0.0.6", "p1"}, // AND across keys, any fixed IP each
		{"fixed_ips=subnet_id%3Ds1&fixed_ips=ip_address%3D10.0.1.8", ""},
		{"fixed_ips=ip_address_substr%3D10.0.0.5", "p3,p4"},
		{"fixed_ips=ip_address_substr%3D192&fixed_ips=ip_address_substr%3D.8", "p5,p6"},
		{"fixed_ips=%20ip_address%20%3D%2010.0.0.5%20", "p3"}, // key and value are stripped
		{"fixed_ips=ip_address%3D", ""},
		{"fixed_ips=True", "p1,p2,p3,p4,p5,p6"},
		{"fixed_ips=mac%3Dx", "p1,p2,p3,p4,p5,p6"}, // unknown keys are ignored
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			page, links, err := run(t, items, portSpec, tt.query)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(page); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
			if links != nil {
				t.Errorf("links without a limit: %v", links)
			}
		})
	}
}

func TestSorting(t *testing.T) {
	items := testItems(t)
	tests := []struct {
		query string
		spec  *Spec
		want  string
	}{
		{"", nil, "p1,p2,p3,p4,p5,p6"}, // id ascending by default
		{"sort_key=id&sort_dir=desc", nil, "p6,p5,p4,p3,p2,p1"},
		// missing name sorts first (null), "" next, then bytewise (A < a < b);
		// ties broken by id ascending.
		{"sort_key=name&sort_dir=asc", nil, "p2,p4,p6,p1,p3,p5"},
		// desc reverses the key, but the id tie-breaker stays ascending.
		{"sort_key=name&sort_dir=desc", nil, "p3,p5,p1,p6,p4,p2"},
		{"sort_key=admin_state_up&sort_dir=asc&sort_key=mtu&sort_dir=desc", nil, "p6,p1,p2,p3,p5,p4"},
		{"sort_key=network_id&sort_dir=desc&sort_key=id&sort_dir=desc", nil, "p4,p5,p2,p6,p3,p1"},
		{"sort_key=mtu&sort_dir=asc", nil, "p1,p4,p3,p5,p6,p2"},
		{"", &Spec{Attributes: portSpec.Attributes, DefaultSort: []Sort{{Key: "mtu", Desc: true}}}, "p2,p3,p5,p6,p1,p4"},
		{"sort_key=name&sort_dir=asc", &Spec{Attributes: portSpec.Attributes, DefaultSort: []Sort{{Key: "mtu", Desc: true}}}, "p2,p4,p6,p1,p3,p5"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			spec := portSpec
			if tt.spec != nil {
				spec = *tt.spec
			}
			page, _, err := run(t, items, spec, tt.query)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(page); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestCompareMixedTypes(t *testing.T) {
	vals := []any{nil, false, true, -1.5, float64(2), 3, "", "A", "a", []any{"x"}, map[string]any{}}
	for i := range vals {
		for j := range vals {
			c := compare(vals[i], vals[j])
			if i == j && c != 0 {
				t.Errorf("compare(%v, %v) = %d, want 0", vals[i], vals[j], c)
			}
			// the last two are "other" and compare equal to each other
			if i < j && c >= 0 && i < 9 {
				t.Errorf("compare(%v, %v) = %d, want < 0", vals[i], vals[j], c)
			}
		}
	}
	if compare(math.NaN(), 1.0) >= 0 || compare(1.0, math.NaN()) <= 0 || compare(math.NaN(), math.NaN()) != 0 {
		t.Error("NaN is not ordered below every number")
	}
}

func TestStableSort(t *testing.T) {
	// Items without ids tie on every key: the input order is kept.
	items := []map[string]any{{"name": "x", "n": 1.0}, {"name": "x", "n": 2.0}, {"name": "x", "n": 3.0}}
	page, _, err := run(t, items, Spec{Attributes: map[string]Attr{"name": {Sort: true}}}, "sort_key=name&sort_dir=desc")
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range page {
		if it["n"] != float64(i+1) {
			t.Fatalf("order not stable: %v", page)
		}
	}
}

func TestPagination(t *testing.T) {
	items := testItems(t)
	withMax := portSpec
	withMax.MaxLimit = 4
	notFound := errdefs.Typed("PortNotFound", errdefs.NotFoundf("Port p9 could not be found."))
	custom := portSpec
	custom.MarkerNotFound = func(m string) error { return notFound }
	ignore := portSpec
	ignore.MarkerNotFound = func(string) error { return nil }
	tests := []struct {
		name, query string
		spec        *Spec
		want        string
		next, prev  string // expected link queries; "-" = no link
		err         error
	}{
		{name: "no limit, no links", query: "", want: "p1,p2,p3,p4,p5,p6", next: "-", prev: "-"},
		{name: "limit 0 means no limit", query: "limit=0", want: "p1,p2,p3,p4,p5,p6", next: "-", prev: "-"},
		{name: "marker ignored without limit", query: "marker=p3", want: "p1,p2,p3,p4,p5,p6", next: "-", prev: "-"},
		{name: "unknown marker ignored without limit", query: "marker=p9", want: "p1,p2,p3,p4,p5,p6", next: "-", prev: "-"},
		{name: "page_reverse without limit reverses", query: "page_reverse=True", want: "p6,p5,p4,p3,p2,p1", next: "-", prev: "-"},
		{name: "first page", query: "limit=2", want: "p1,p2",
			next: "limit=2&marker=p2", prev: "limit=2&marker=p1&page_reverse=True"},
		{name: "middle page", query: "limit=2&marker=p2", want: "p3,p4",
			next: "limit=2&marker=p4", prev: "limit=2&marker=p3&page_reverse=True"},
		{name: "last full page still has next", query: "limit=2&marker=p4", want: "p5,p6",
			next: "limit=2&marker=p6", prev: "limit=2&marker=p5&page_reverse=True"},
		{name: "empty page after the end", query: "limit=2&marker=p6", want: "",
			next: "-", prev: "limit=2&page_reverse=True"},
		{name: "short last page", query: "limit=4&marker=p3", want: "p4,p5,p6",
			next: "-", prev: "limit=4&marker=p4&page_reverse=True"},
		{name: "limit above count", query: "limit=10", want: "p1,p2,p3,p4,p5,p6",
			next: "-", prev: "limit=10&marker=p1&page_reverse=True"},
		{name: "huge limit", query: "limit=99999999999999999999", want: "p1,p2,p3,p4,p5,p6",
			next: "-", prev: "limit=99999999999999999999&marker=p1&page_reverse=True"},
		{name: "reverse without marker is the last page", query: "limit=2&page_reverse=True", want: "p5,p6",
			next: "limit=2&marker=p6", prev: "limit=2&marker=p5&page_reverse=True"},
		{name: "reverse with marker", query: "limit=2&marker=p5&page_reverse=True", want: "p3,p4",
			next: "limit=2&marker=p4", prev: "limit=2&marker=p3&page_reverse=True"},
		{name: "reverse short first page", query: "limit=2&marker=p2&page_reverse=True", want: "p1",
			next: "limit=2&marker=p1", prev: "-"},
		{name: "reverse before the start", query: "limit=2&marker=p1&page_reverse=True", want: "",
			next: "limit=2", prev: "-"},
		{name: "reverse page_reverse spelling", query: "limit=2&marker=p5&page_reverse=true", want: "p3,p4",
			next: "limit=2&marker=p4", prev: "limit=2&marker=p3&page_reverse=True"},
		{name: "sorted pages", query: "limit=2&sort_key=name&sort_dir=asc&marker=p4", want: "p6,p1",
			next: "limit=2&marker=p1&sort_dir=asc&sort_key=name", prev: "limit=2&marker=p6&page_reverse=True&sort_dir=asc&sort_key=name"},
		{name: "sorted desc reverse", query: "limit=2&sort_key=name&sort_dir=desc&marker=p4&page_reverse=True", want: "p1,p6",
			next: "limit=2&marker=p6&sort_dir=desc&sort_key=name", prev: "limit=2&marker=p1&page_reverse=True&sort_dir=desc&sort_key=name"},
		{name: "filters are kept in links", query: "limit=1&network_id=n1&fields=name", want: "p1",
			next: "fields=name&limit=1&marker=p1&network_id=n1", prev: "fields=name&limit=1&marker=p1&network_id=n1&page_reverse=True"},
		// The marker need not pass the filters: its sort position is used.
		{name: "filtered-out marker", query: "limit=2&network_id=n1&marker=p2", want: "p3,p6",
			next: "limit=2&marker=p6&network_id=n1", prev: "limit=2&marker=p3&network_id=n1&page_reverse=True"},
		{name: "unknown marker is 404", query: "limit=2&marker=p9", err: errdefs.ErrNotFound},
		{name: "unknown marker custom error", query: "limit=2&marker=p9", spec: &custom, err: notFound},
		{name: "unknown marker ignored by hook", query: "limit=2&marker=p9", spec: &ignore, want: "p1,p2",
			next: "limit=2&marker=p2", prev: "limit=2&marker=p1&page_reverse=True"},
		{name: "max limit applies without limit", query: "", spec: &withMax, want: "p1,p2,p3,p4",
			next: "marker=p4", prev: "marker=p1&page_reverse=True"},
		{name: "limit above max keeps the request's limit in links", query: "limit=50&marker=p2", spec: &withMax, want: "p3,p4,p5,p6",
			next: "limit=50&marker=p6", prev: "limit=50&marker=p3&page_reverse=True"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := portSpec
			if tt.spec != nil {
				spec = *tt.spec
			}
			page, links, err := run(t, items, spec, tt.query)
			if tt.err != nil {
				if !errors.Is(err, tt.err) && err != tt.err {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(page); got != tt.want && !strings.Contains(tt.query, "fields") {
				t.Errorf("page %s, want %s", got, tt.want)
			}
			next, prev := "-", "-"
			for i, l := range links {
				u, err := url.Parse(l.Href)
				if err != nil {
					t.Fatal(err)
				}
				if u.Scheme != "http" || u.Host != "nimbo:9696" || u.Path != "/v2.0/ports" {
					t.Errorf("link %s does not use the base URL", l.Href)
				}
				switch {
				case l.Rel == "next" && i == 0:
					next = u.RawQuery
				case l.Rel == "previous":
					prev = u.RawQuery
				default:
					t.Errorf("unexpected link %v at %d", l, i)
				}
			}
			if next != tt.next {
				t.Errorf("next link %q, want %q", next, tt.next)
			}
			if prev != tt.prev {
				t.Errorf("previous link %q, want %q", prev, tt.prev)
			}
		})
	}
}

func TestMarkerNotFoundError(t *testing.T) {
	_, _, err := run(t, testItems(t), portSpec, "limit=1&marker=nope")
	if !errdefs.IsNotFound(err) || !strings.Contains(errdefs.Message(err), "nope") {
		t.Fatalf("err = %v, want a 404 naming the marker", err)
	}
}

func TestFields(t *testing.T) {
	items := testItems(t)
	snapshot, _ := json.Marshal(items)
	tests := []struct {
		query string
		want  []string // keys of every item
	}{
		{"fields=id&fields=name", []string{"id", "name"}},
		{"fields=name", []string{"name"}}, // id is not forced in
		{"fields=id&fields=bogus", []string{"id"}},
		{"fields=bogus", []string{}},
		{"fields=", []string{}}, // Neutron's UserFilterHook keeps nothing
		{"fields=id&fields=", []string{"id"}},
		{"fields=fixed_ips&fields=tags&fields=id", []string{"fixed_ips", "id", "tags"}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			page, _, err := run(t, items, portSpec, tt.query+"&id=p1&id=p3")
			if err != nil {
				t.Fatal(err)
			}
			if len(page) != 2 {
				t.Fatalf("got %d items", len(page))
			}
			for _, it := range page {
				keys := []string{}
				for k := range it {
					keys = append(keys, k)
				}
				sortStrings(keys)
				if !reflect.DeepEqual(keys, tt.want) {
					t.Errorf("keys %v, want %v", keys, tt.want)
				}
			}
		})
	}
	// A page selected without id still gets markers in its links, and the
	// input is untouched.
	page, links, err := run(t, items, portSpec, "fields=name&limit=2&sort_key=name&sort_dir=asc")
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 || page[0]["id"] != nil || len(links) != 2 || !strings.Contains(links[0].Href, "marker=p4") {
		t.Errorf("page %v links %v", page, links)
	}
	if after, _ := json.Marshal(items); string(after) != string(snapshot) {
		t.Error("Apply modified its input")
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// follow requests the link's query as a new list request.
func follow(t *testing.T, items []map[string]any, links []Link, rel string) ([]map[string]any, []Link, bool) {
	t.Helper()
	for _, l := range links {
		if l.Rel == rel {
			u, err := url.Parse(l.Href)
			if err != nil {
				t.Fatal(err)
			}
			page, links, err := run(t, items, portSpec, u.RawQuery)
			if err != nil {
				t.Fatalf("following %s: %v", l.Href, err)
			}
			return page, links, true
		}
	}
	return nil, nil, false
}

// TestWalkLikeTempest replays neutron-tempest-plugin's
// BaseSearchCriteriaTest._list_all_with_hrefs: one-item pages forward by next
// links to an empty last page without a next link, then back by previous
// links.
func TestWalkLikeTempest(t *testing.T) {
	items := testItems(t)
	for _, dir := range []string{"asc", "desc"} {
		all, _, err := run(t, items, portSpec, "sort_key=name&sort_dir="+dir)
		if err != nil {
			t.Fatal(err)
		}
		var fwd []map[string]any
		page, links, err := run(t, items, portSpec, "limit=1&sort_key=name&sort_dir="+dir)
		if err != nil {
			t.Fatal(err)
		}
		fwd = append(fwd, page...)
		for range len(items) - 1 {
			var ok bool
			page, links, ok = follow(t, items, links, "next")
			if !ok || len(page) != 1 {
				t.Fatalf("%s: forward walk stopped at %d: %v", dir, len(fwd), links)
			}
			fwd = append(fwd, page...)
		}
		page, links, ok := follow(t, items, links, "next")
		if !ok || len(page) != 0 {
			t.Fatalf("%s: want an empty page after the last one", dir)
		}
		if _, _, ok := follow(t, items, links, "next"); ok {
			t.Fatalf("%s: the empty last page has a next link", dir)
		}
		if ids(fwd) != ids(all) {
			t.Fatalf("%s: forward %s, want %s", dir, ids(fwd), ids(all))
		}
		var back []map[string]any
		for range len(items) {
			page, links, ok = follow(t, items, links, "previous")
			if !ok || len(page) != 1 {
				t.Fatalf("%s: backward walk stopped after %d", dir, len(back))
			}
			back = append(page, back...)
		}
		if ids(back) != ids(all) {
			t.Fatalf("%s: backward %s, want %s", dir, ids(back), ids(all))
		}
		// The first page, reached backwards, is full: it still has a
		// previous link, to an empty page that has none.
		page, links, ok = follow(t, items, links, "previous")
		if !ok || len(page) != 0 {
			t.Fatalf("%s: want an empty page before the first one", dir)
		}
		if _, _, ok := follow(t, items, links, "previous"); ok {
			t.Fatalf("%s: the empty first page has a previous link", dir)
		}
	}
}

// TestReverseWalkLikeTempest replays
// _test_list_pagination_page_reverse_with_href_links (pages of 2 from the end
// by previous links) and _test_list_pagination_page_reverse (limit 3, then
// the 2 items before the third with page_reverse).
func TestReverseWalkLikeTempest(t *testing.T) {
	items := testItems(t)
	for _, dir := range []string{"asc", "desc"} {
		all, _, err := run(t, items, portSpec, "sort_key=name&sort_dir="+dir)
		if err != nil {
			t.Fatal(err)
		}
		page, links, err := run(t, items, portSpec, "limit=2&page_reverse=True&sort_key=name&sort_dir="+dir)
		if err != nil {
			t.Fatal(err)
		}
		got := page
		for range 2 {
			var ok bool
			page, links, ok = follow(t, items, links, "previous")
			if !ok {
				t.Fatalf("%s: no previous link", dir)
			}
			got = append(page, got...)
		}
		if ids(got) != ids(all) {
			t.Fatalf("%s: got %s, want %s", dir, ids(got), ids(all))
		}
		page, links, ok := follow(t, items, links, "previous")
		if !ok || len(page) != 0 {
			t.Fatalf("%s: want an empty page before the first one", dir)
		}
		if _, _, ok := follow(t, items, links, "previous"); ok {
			t.Fatalf("%s: the empty first page has a previous link", dir)
		}

		first, _, err := run(t, items, portSpec, "limit=3&sort_key=name&sort_dir="+dir)
		if err != nil {
			t.Fatal(err)
		}
		rev, _, err := run(t, items, portSpec, fmt.Sprintf("limit=2&marker=%s&page_reverse=True&sort_key=name&sort_dir=%s", first[2]["id"], dir))
		if err != nil {
			t.Fatal(err)
		}
		if ids(rev) != ids(first[:2]) {
			t.Fatalf("%s: reverse page %s, want %s", dir, ids(rev), ids(first[:2]))
		}
	}
}

// TestHandBuiltQuery covers a Query not made by Parse.
func TestHandBuiltQuery(t *testing.T) {
	items := testItems(t)
	q := Query{Filters: map[string][]string{"network_id": {"n1"}}, Sorts: []Sort{{Key: "mtu", Desc: true}}, Limit: 2}
	page, links, err := Apply(items, q, baseURL)
	if err != nil {
		t.Fatal(err)
	}
	if ids(page) != "p3,p6" {
		t.Errorf("page %s", ids(page))
	}
	if len(links) != 2 || links[0].Href != "http://nimbo:9696/v2.0/ports?limit=2&marker=p6&network_id=n1&sort_dir=desc&sort_key=mtu" {
		t.Errorf("links %v", links)
	}
	// Nil base: links are relative.
	_, links, _ = Apply(items, Query{Limit: 1}, nil)
	if links[0].Href != "?limit=1&marker=p1" {
		t.Errorf("links %v", links)
	}
}

func TestLinkJSON(t *testing.T) {
	b, _ := json.Marshal(Link{Rel: "next", Href: "h"})
	if string(b) != `{"rel":"next","href":"h"}` {
		t.Errorf("got %s", b)
	}
}

// TestPagesMatchFullSort checks the one-pass page selection against slicing
// the fully sorted list, for every marker, limit and direction, on items with
// many ties, missing values and mixed types.
func TestPagesMatchFullSort(t *testing.T) {
	var items []map[string]any
	for i := range 40 {
		it := map[string]any{"id": fmt.Sprintf("i%02d", (i*17)%40), "mtu": float64(i % 3)}
		switch i % 5 {
		case 0:
			it["name"] = "x"
		case 1:
			it["name"] = nil
		case 2:
			it["name"] = float64(i % 4)
		case 3:
			it["name"] = i%2 == 0
		}
		items = append(items, it)
	}
	items = append(items, map[string]any{"id": "i05", "name": "dup"}) // a duplicate id
	for _, sorting := range []string{"", "sort_key=name&sort_dir=asc", "sort_key=name&sort_dir=desc&sort_key=mtu&sort_dir=asc"} {
		all, _, err := run(t, items, portSpec, sorting)
		if err != nil {
			t.Fatal(err)
		}
		for _, limit := range []int{1, 2, 3, 7, 40, 41, 100} {
			for m := -1; m < len(items); m++ {
				for _, rev := range []bool{false, true} {
					query := fmt.Sprintf("%s&limit=%d", sorting, limit)
					var want []map[string]any
					// Where the marker sits: Neutron compares sort values, so
					// the page starts after the last item tied with it.
					var pos int
					switch {
					case m < 0 && !rev:
						want = all[:min(limit, len(all))]
					case m < 0:
						want = all[max(0, len(all)-limit):]
					default:
						mid := items[m]["id"].(string)
						query += "&marker=" + mid
						var marker map[string]any
						for _, it := range items {
							if it["id"] == mid {
								marker = it
								break
							}
						}
						lo, hi := -1, -1 // the run of items tied with the marker
						for i, it := range all {
							if sortTie(it, marker, sorting) {
								if lo < 0 {
									lo = i
								}
								hi = i + 1
							}
						}
						if !rev {
							pos = hi
							want = all[pos:min(len(all), pos+limit)]
						} else {
							pos = lo
							want = all[max(0, pos-limit):pos]
						}
					}
					if rev {
						query += "&page_reverse=True"
					}
					page, _, err := run(t, items, portSpec, query)
					if err != nil {
						t.Fatal(err)
					}
					if len(page) != len(want) {
						t.Fatalf("%s: got %d items, want %d", query, len(page), len(want))
					}
					for i := range page {
						if !sameMap(page[i], want[i]) {
							t.Fatalf("%s: item %d is %v, want %v", query, i, page[i], want[i])
						}
					}
				}
			}
		}
	}
}

// sortTie reports whether a and b have equal sort values (id included).
func sortTie(a, b map[string]any, sorting string) bool {
	keys := []string{"id"}
	if strings.Contains(sorting, "name") {
		keys = append(keys, "name")
	}
	if strings.Contains(sorting, "mtu") {
		keys = append(keys, "mtu")
	}
	for _, k := range keys {
		if compare(a[k], b[k]) != 0 {
			return false
		}
	}
	return true
}

// TestGoTypedItems covers items that were not JSON round-tripped: Go ints,
// []string lists and a non-string key.
func TestGoTypedItems(t *testing.T) {
	items := []map[string]any{
		{"id": 2, "mtu": int64(1500), "security_groups": []string{"a"}, "tags": []string{"x", "y"}},
		{"id": 1, "mtu": 9000, "security_groups": []string{"b"}, "tags": []string{"x"}},
		{"id": json.Number("3"), "mtu": json.Number("1450"), "tags": []any{"y"}},
	}
	tests := []struct{ query, want string }{
		{"mtu=1500", "2"},
		{"mtu=1450", "3"},
		{"security_groups=b", "1"},
		{"tags=x,y", "2"},
		{"sort_key=mtu&sort_dir=asc", "3,2,1"},
		{"limit=1&marker=2", "3"},
	}
	for _, tt := range tests {
		page, _, err := run(t, items, portSpec, tt.query)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(page); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.query, got, tt.want)
		}
	}
	_, links, err := run(t, items, portSpec, "limit=1")
	if err != nil || !strings.Contains(links[0].Href, "marker=1") {
		t.Errorf("links %v, %v", links, err)
	}
}

func TestSelectFields(t *testing.T) {
	item := map[string]any{"id": "a", "name": "n", "mtu": 1.0}
	if got := SelectFields(item, url.Values{}); !reflect.DeepEqual(got, item) {
		t.Errorf("no fields: %v", got)
	}
	got := SelectFields(item, mustQuery(t, "fields=id&fields=mtu&fields=bogus"))
	if want := map[string]any{"id": "a", "mtu": 1.0}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if len(item) != 3 {
		t.Error("SelectFields modified its input")
	}
}
