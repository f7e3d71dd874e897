// Package networkapi serves the Neutron v2.0 API over the network service: it
// decodes requests strictly (Neutron rejects unknown attributes), checks
// attribute-level policy, calls internal/network and renders Neutron's JSON;
// list requests go through internal/listquery (filters, fields, sorting,
// pagination). The API lives under /networking; its catalog URL is
// unversioned, as Neutron's is.
package networkapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"strings"

	v2 "github.com/nimbo-cloud/nimbo/api/network/v2"
	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/jsondec"
	"github.com/nimbo-cloud/nimbo/internal/listquery"
	"github.com/nimbo-cloud/nimbo/internal/network"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/server"
)

// Prefix is where the API is served.
const Prefix = "/networking"

// API is the Neutron HTTP API.
type API struct {
	svc   *network.Service
	base  string       // public base URL + Prefix
	ports *renderCache // port list renderings
}

// Register adds the network routes to srv; base is the public base URL.
func Register(srv *server.Server, svc *network.Service, base string) *API {
	a := &API{svc: svc, base: strings.TrimSuffix(base, "/") + Prefix, ports: newRenderCache()}
	srv.Prefix(Prefix, server.Neutron)
	srv.AcceptJSONSuffix(Prefix)
	pub := func(p string, h server.HandlerFunc) { srv.Public(server.Neutron, p, h) }
	authed := func(p string, h server.HandlerFunc) { srv.Authed(server.Neutron, p, h) }
	v := func(method, path string) string { return method + " " + Prefix + "/v2.0" + path }

	pub("GET "+Prefix+"/{$}", a.versions)
	pub("GET "+Prefix, a.versions)
	authed(v("GET", "/{$}"), a.resources)
	authed(v("GET", "/extensions"), a.listExtensions)
	authed(v("GET", "/extensions/{alias}"), a.getExtension)
	authed(v("GET", "/availability_zones"), a.availabilityZones)

	for _, res := range a.resourcesTable() {
		authed(v("GET", "/"+res.collection), a.list(res))
		authed(v("POST", "/"+res.collection), a.create(res))
		authed(v("GET", "/"+res.collection+"/{id}"), a.show(res))
		if res.update != nil {
			authed(v("PUT", "/"+res.collection+"/{id}"), a.update(res))
		}
		authed(v("DELETE", "/"+res.collection+"/{id}"), a.remove(res))
		if network.Taggable(res.collection) {
			authed(v("GET", "/"+res.collection+"/{id}/tags"), a.getTags)
			authed(v("PUT", "/"+res.collection+"/{id}/tags"), a.replaceTags)
			authed(v("DELETE", "/"+res.collection+"/{id}/tags"), a.deleteTags)
			authed(v("GET", "/"+res.collection+"/{id}/tags/{tag}"), a.checkTag)
			authed(v("PUT", "/"+res.collection+"/{id}/tags/{tag}"), a.addTag)
			authed(v("DELETE", "/"+res.collection+"/{id}/tags/{tag}"), a.removeTag)
		}
	}
	authed(v("GET", "/quotas"), a.listQuotas)
	authed(v("GET", "/quotas/{project}"), a.getQuota)
	authed(v("GET", "/quotas/{project}/default"), a.defaultQuota)
	authed(v("GET", "/quotas/{project}/details"), a.quotaDetails)
	authed(v("PUT", "/quotas/{project}"), a.setQuota)
	authed(v("DELETE", "/quotas/{project}"), a.resetQuota)
	a.registerL3(authed, v)
	return a
}

// creds is the caller as policy sees it.
func creds(r *http.Request) policy.Creds { return server.TokenFrom(r.Context()).Creds() }

// decodeBody decodes {"<key>": {...}} (strictly) into v, or, for bulk
// creates, {"<collection>": [{...}, ...]} into a slice of raw objects.
func decodeBody(r *http.Request, key, collection string) (one json.RawMessage, many []json.RawMessage, err error) {
	var outer map[string]json.RawMessage
	if err := jsondec.Decode(r.Body, &outer, false); err != nil {
		return nil, nil, err
	}
	if raw, ok := outer[key]; ok && len(outer) == 1 {
		return raw, nil, nil
	}
	if raw, ok := outer[collection]; ok && collection != "" && len(outer) == 1 {
		if err := jsondec.DecodeBytes(raw, &many, true); err != nil {
			return nil, nil, err
		}
		if len(many) == 0 {
			return nil, nil, errdefs.Invalidf("Invalid input: '%s' must hold at least one %s.", collection, key)
		}
		return nil, many, nil
	}
	return nil, nil, errdefs.Invalidf("Resource body required: expected one '%s' object%s.", key, map[bool]string{true: " or a '" + collection + "' list", false: ""}[collection != ""])
}

// decodeInto decodes one resource object strictly, naming unknown attributes
// the way Neutron does. An attribute given as null reaches v as a non-nil
// pointer to its type's zero value when the type tells null from absent
// (v2.Nullable): encoding/json alone would leave the pointer nil.
func decodeInto(raw json.RawMessage, v any) error {
	if len(raw) == 0 || raw[0] != '{' {
		return errdefs.Invalidf("Invalid input: the resource must be a JSON object.")
	}
	err := jsondec.DecodeBytes(raw, v, true)
	if err != nil {
		var fe *v2.FieldError
		if uerr := json.Unmarshal(raw, v); errors.As(uerr, &fe) {
			return errdefs.Invalidf("%s", fe.Error())
		}
	}
	if err != nil && strings.Contains(err.Error(), "unknown field") {
		msg := errdefs.Message(err)
		i := strings.Index(msg, `"`)
		if i >= 0 {
			return errdefs.Invalidf("Unrecognized attribute(s) '%s'", strings.Trim(strings.TrimSuffix(msg[i:], "."), `"`))
		}
	}
	if err == nil {
		fillNulls(raw, v)
	}
	return err
}

// fillNulls sets the v2.Nullable pointer fields of the struct v points to
// whose attribute is null in raw to a new zero value (an explicit null).
func fillNulls(raw json.RawMessage, v any) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return
	}
	st := rv.Elem()
	nullable := reflect.TypeFor[v2.Nullable]()
	for i := range st.NumField() {
		f := st.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		val, ok := obj[name]
		if !ok || string(bytes.TrimSpace(val)) != "null" || f.Type.Kind() != reflect.Pointer || !f.Type.Implements(nullable) {
			continue
		}
		st.Field(i).Set(reflect.New(f.Type.Elem()))
	}
}

// render turns a wire struct into the generic map listquery works on.
func render(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // wire structs always marshal
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

func (a *API) pageURL(r *http.Request) *url.URL {
	u, _ := url.Parse(a.base + strings.TrimPrefix(r.URL.Path, Prefix))
	return u
}

func (a *API) versions(w http.ResponseWriter, _ *http.Request) error {
	return server.JSON(w, http.StatusOK, map[string]any{"versions": []any{map[string]any{
		"id": "v2.0", "status": "CURRENT", "links": []any{map[string]string{"href": a.base + "/v2.0/", "rel": "self"}}}}})
}

func (a *API) resources(w http.ResponseWriter, _ *http.Request) error {
	var out []any
	for _, res := range a.resourcesTable() {
		out = append(out, map[string]any{"name": res.key, "collection": res.plural(),
			"links": []any{map[string]string{"href": a.base + "/v2.0/" + res.collection, "rel": "self"}}})
	}
	return server.JSON(w, http.StatusOK, map[string]any{"resources": out})
}

func (a *API) availabilityZones(w http.ResponseWriter, _ *http.Request) error {
	return server.JSON(w, http.StatusOK, map[string]any{"availability_zones": []any{
		map[string]string{"name": "nova", "resource": "network", "state": "available"}}})
}

// list, create, show, update and remove are the generic collection handlers.
func (a *API) list(res resource) server.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		q, err := listquery.Parse(r.URL.Query(), res.spec)
		if err != nil {
			return err
		}
		items, err := res.list(r)
		if err != nil {
			return err
		}
		page, links, err := listquery.Apply(items, q, a.pageURL(r))
		if err != nil {
			return err
		}
		if page == nil {
			page = []map[string]any{}
		}
		body := map[string]any{res.plural(): page}
		if len(links) > 0 {
			body[res.plural()+"_links"] = links
		}
		return server.JSON(w, http.StatusOK, body)
	}
}

func (a *API) show(res resource) server.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		m, err := res.show(r, r.PathValue("id"))
		if err != nil {
			return err
		}
		return server.JSON(w, http.StatusOK, map[string]any{res.key: listquery.SelectFields(m, r.URL.Query())})
	}
}

func (a *API) create(res resource) server.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		one, many, err := decodeBody(r, res.key, res.plural())
		if err != nil {
			return err
		}
		if one != nil {
			m, _, err := res.create(r, one)
			if err != nil {
				return err
			}
			return server.JSON(w, http.StatusCreated, map[string]any{res.key: m})
		}
		// Bulk create is all or nothing: undo what was made when one fails.
		var out []map[string]any
		var undo []string
		for _, raw := range many {
			m, id, err := res.create(r, raw)
			if err != nil {
				for i := len(undo) - 1; i >= 0; i-- {
					_ = res.remove(r, undo[i])
				}
				return err
			}
			out = append(out, m)
			undo = append(undo, id)
		}
		return server.JSON(w, http.StatusCreated, map[string]any{res.plural(): out})
	}
}

func (a *API) update(res resource) server.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		one, _, err := decodeBody(r, res.key, "")
		if err != nil {
			return err
		}
		m, err := res.update(r, r.PathValue("id"), one)
		if err != nil {
			return err
		}
		return server.JSON(w, http.StatusOK, map[string]any{res.key: m})
	}
}

func (a *API) remove(res resource) server.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := res.remove(r, r.PathValue("id")); err != nil {
			return err
		}
		return server.NoContent(w)
	}
}
