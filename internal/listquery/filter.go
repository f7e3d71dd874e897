package listquery

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

// Tag filter variants of a Tags attribute (neutron/objects/tag.py).
const (
	tagsAll = iota
	tagsAny
	notTagsAll
	notTagsAny
)

// filterTarget is what a filter parameter refers to.
type filterTarget struct {
	attr    string // the attribute the filter reads
	a       Attr
	tagMode int // for Tags attributes
}

// lookupFilter resolves a filter parameter to its attribute: the attribute
// of that name, or one of the tags-any/not-tags/not-tags-any variants of a
// Tags attribute. Opaque attributes without a Filter are not filterable.
func lookupFilter(sp *Spec, key string) (filterTarget, bool) {
	if a, ok := sp.Attributes[key]; ok {
		if a.Filter == nil && a.Kind == Opaque {
			return filterTarget{}, false
		}
		return filterTarget{attr: key, a: a, tagMode: tagsAll}, true
	}
	try := func(name string, mode int) (filterTarget, bool) {
		a, ok := sp.Attributes[name]
		if !ok || a.Kind != Tags || a.Filter != nil {
			return filterTarget{}, false
		}
		return filterTarget{attr: name, a: a, tagMode: mode}, true
	}
	if base, ok := strings.CutPrefix(key, "not-"); ok {
		if name, ok := strings.CutSuffix(base, "-any"); ok {
			if t, ok := try(name, notTagsAny); ok {
				return t, true
			}
		}
		if t, ok := try(base, notTagsAll); ok {
			return t, true
		}
	}
	if name, ok := strings.CutSuffix(key, "-any"); ok {
		return try(name, tagsAny)
	}
	return filterTarget{}, false
}

// compileFilter turns one filter parameter into a Match (nil: no constraint).
// A key that resolves to no attribute (only possible for a Query not built by
// Parse) is compared as a String.
func compileFilter(sp *Spec, key string, values []string) (Match, error) {
	t, ok := lookupFilter(sp, key)
	if !ok {
		t = filterTarget{attr: key, a: Attr{Kind: String}}
	}
	if t.a.Filter != nil {
		return t.a.Filter(key, values)
	}
	name := t.attr
	switch t.a.Kind {
	case Bool:
		var want [2]bool // [false, true]
		for _, v := range values {
			b, err := parseBool(v)
			if err != nil {
				return nil, errdefs.Typed("InvalidInput",
					errdefs.Invalidf("Invalid input for %s. Reason: '%s' cannot be converted to boolean.", key, v))
			}
			if b {
				want[1] = true
			} else {
				want[0] = true
			}
		}
		return func(item map[string]any) bool {
			b, ok := item[name].(bool)
			if !ok {
				return false
			}
			if b {
				return want[1]
			}
			return want[0]
		}, nil
	case Int:
		want := make([]float64, 0, len(values))
		for _, v := range values {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
					continue // a valid integer no attribute can equal
				}
				return nil, errdefs.Typed("InvalidInput",
					errdefs.Invalidf("Invalid input for %s. Reason: '%s' is not an integer.", key, v))
			}
			want = append(want, float64(n))
		}
		return func(item map[string]any) bool {
			f, ok := toFloat(item[name])
			if !ok {
				return false
			}
			for _, w := range want {
				if f == w {
					return true
				}
			}
			return false
		}, nil
	case List:
		set := stringSet(values)
		return func(item map[string]any) bool {
			return anyIn(item[name], set)
		}, nil
	case Tags:
		set := make(map[string]struct{})
		for _, v := range values {
			for _, t := range strings.Split(v, ",") {
				set[t] = struct{}{}
			}
		}
		mode := t.tagMode
		return func(item map[string]any) bool {
			var found []string // distinct wanted tags the item has
			forEachString(item[name], func(s string) {
				if _, ok := set[s]; ok && !slices.Contains(found, s) {
					found = append(found, s)
				}
			})
			all, some := len(found) == len(set), len(found) > 0
			switch mode {
			case tagsAll:
				return all
			case tagsAny:
				return some
			case notTagsAll:
				return !all
			default:
				return !some
			}
		}, nil
	default: // String
		if len(values) == 1 {
			want := values[0]
			return func(item map[string]any) bool {
				s, ok := item[name].(string)
				return ok && s == want
			}, nil
		}
		set := stringSet(values)
		return func(item map[string]any) bool {
			s, ok := item[name].(string)
			if !ok {
				return false
			}
			_, in := set[s]
			return in
		}, nil
	}
}

// compileFilters compiles every filter against sp.
func compileFilters(sp *Spec, filters map[string][]string) ([]Match, error) {
	keys := make([]string, 0, len(filters))
	for k := range filters {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the same error for the same query
	var out []Match
	for _, k := range keys {
		vs := filters[k]
		if len(vs) == 0 {
			continue
		}
		m, err := compileFilter(sp, k, vs)
		if err != nil {
			return nil, err
		}
		if m != nil {
			out = append(out, m)
		}
	}
	return out, nil
}

// parseBool is oslo's strutils.bool_from_string(strict=True).
func parseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "t", "true", "on", "y", "yes":
		return true, nil
	case "0", "f", "false", "off", "n", "no":
		return false, nil
	}
	return false, strconv.ErrSyntax
}

func stringSet(values []string) map[string]struct{} {
	set := make(map[string]struct{}, len(values))
	for _, v := range values {
		set[v] = struct{}{}
	}
	return set
}

// anyIn reports whether v is a list with a string element in set.
func anyIn(v any, set map[string]struct{}) bool {
	found := false
	forEachString(v, func(s string) {
		if _, ok := set[s]; ok {
			found = true
		}
	})
	return found
}

// forEachString calls f on each string element of a []any or []string.
func forEachString(v any, f func(string)) {
	switch l := v.(type) {
	case []any:
		for _, e := range l {
			if s, ok := e.(string); ok {
				f(s)
			}
		}
	case []string:
		for _, s := range l {
			f(s)
		}
	}
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case uint32:
		return float64(n), true
	case uint64:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

// FixedIPs is the FilterFunc of Neutron's port fixed_ips filter. Each value
// has the form key=value (e.g. fixed_ips=ip_address%3D10.0.0.5); a value
// without "=" or with an empty key is a 400 (convert_kvp_list_to_dict), and
// the single value "True" means no filter. The keys ip_address, subnet_id
// and ip_address_substr are understood, others are ignored, as in
// db_base_plugin_v2._get_ports_query and the ML2 plugin: a port matches when,
// for each key given, one of its fixed IPs has an ip_address (subnet_id) equal
// to one of that key's values, or an ip_address containing one of the
// ip_address_substr values. The keys are checked independently, so
// ip_address and subnet_id may match different fixed IPs, as in Neutron.
func FixedIPs(name string, values []string) (Match, error) {
	if len(values) == 1 && values[0] == "True" {
		return nil, nil
	}
	ips, subnets := map[string]struct{}{}, map[string]struct{}{}
	var substrs []string
	for _, v := range values {
		k, val, ok := strings.Cut(v, "=")
		k, val = strings.TrimSpace(k), strings.TrimSpace(val)
		if !ok || k == "" {
			return nil, errdefs.Typed("InvalidInput",
				errdefs.Invalidf("Invalid input for %s. Reason: '%s' is not of the form <key>=[value].", name, v))
		}
		switch k {
		case "ip_address":
			ips[val] = struct{}{}
		case "subnet_id":
			subnets[val] = struct{}{}
		case "ip_address_substr":
			substrs = append(substrs, val)
		}
	}
	if len(ips) == 0 && len(subnets) == 0 && len(substrs) == 0 {
		return nil, nil
	}
	return func(item map[string]any) bool {
		l, _ := item[name].([]any)
		ipOK, subnetOK, substrOK := len(ips) == 0, len(subnets) == 0, len(substrs) == 0
		for _, e := range l {
			fip, _ := e.(map[string]any)
			ip, _ := fip["ip_address"].(string)
			sub, _ := fip["subnet_id"].(string)
			if !ipOK {
				if _, in := ips[ip]; in && fip["ip_address"] != nil {
					ipOK = true
				}
			}
			if !subnetOK {
				if _, in := subnets[sub]; in && fip["subnet_id"] != nil {
					subnetOK = true
				}
			}
			if !substrOK && fip["ip_address"] != nil {
				for _, s := range substrs {
					if strings.Contains(ip, s) {
						substrOK = true
						break
					}
				}
			}
		}
		return ipOK && subnetOK && substrOK
	}, nil
}
