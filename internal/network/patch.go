package network

import (
	"encoding/json"
	"time"
)

// patchTags rewrites a stored object's tags, updated_at and revision without
// decoding the rest of it (so it works for every resource kind).
func patchTags(raw []byte, tags []string, s *Service) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	var rev int64
	_ = json.Unmarshal(obj["revision"], &rev)
	set := func(k string, v any) {
		b, _ := json.Marshal(v)
		obj[k] = b
	}
	if len(tags) == 0 {
		delete(obj, "tags")
	} else {
		set("tags", tags)
	}
	set("revision", rev+1)
	set("updated_at", s.now().UTC().Truncate(time.Second))
	return json.Marshal(obj)
}
