package identityapi

import (
	"net/http"

	v3 "github.com/nimbo-cloud/nimbo/api/identity/v3"
	"github.com/nimbo-cloud/nimbo/internal/identity"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/server"
)

func (a *API) service(s identity.CatalogService) v3.Service {
	return v3.Service{ID: s.ID, Type: s.Type, Name: s.Name, Description: s.Description, Enabled: s.Enabled, Links: a.link("/v3/services/" + s.ID)}
}

func (a *API) endpoint(e identity.Endpoint) v3.Endpoint {
	return v3.Endpoint{ID: e.ID, Interface: e.Interface, Region: e.RegionID, RegionID: e.RegionID, ServiceID: e.ServiceID,
		URL: e.URL, Enabled: e.Enabled, Links: a.link("/v3/endpoints/" + e.ID)}
}

func (a *API) region(rg identity.Region) v3.Region {
	return v3.Region{ID: rg.ID, Description: rg.Description, Links: a.link("/v3/regions/" + rg.ID)}
}

func (a *API) listServices(w http.ResponseWriter, r *http.Request) error {
	if err := check(r, "identity:list_services", policy.Target{}); err != nil {
		return err
	}
	out := []v3.Service{}
	for _, s := range a.svc.ListServices(r.URL.Query().Get("type")) {
		out = append(out, a.service(s))
	}
	return server.JSON(w, http.StatusOK, map[string]any{"services": out, "links": a.listLinks(r)})
}

func (a *API) getService(w http.ResponseWriter, r *http.Request) error {
	if err := check(r, "identity:get_service", policy.Target{}); err != nil {
		return err
	}
	s, err := a.svc.GetService(r.PathValue("id"))
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusOK, map[string]any{"service": a.service(s)})
}

func (a *API) listEndpoints(w http.ResponseWriter, r *http.Request) error {
	if err := check(r, "identity:list_endpoints", policy.Target{}); err != nil {
		return err
	}
	q := r.URL.Query()
	out := []v3.Endpoint{}
	for _, e := range a.svc.ListEndpoints(identity.EndpointFilter{ServiceID: q.Get("service_id"), Interface: q.Get("interface"), RegionID: q.Get("region_id")}) {
		out = append(out, a.endpoint(e))
	}
	return server.JSON(w, http.StatusOK, map[string]any{"endpoints": out, "links": a.listLinks(r)})
}

func (a *API) getEndpoint(w http.ResponseWriter, r *http.Request) error {
	if err := check(r, "identity:get_endpoint", policy.Target{}); err != nil {
		return err
	}
	e, err := a.svc.GetEndpoint(r.PathValue("id"))
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusOK, map[string]any{"endpoint": a.endpoint(e)})
}

func (a *API) listRegions(w http.ResponseWriter, r *http.Request) error {
	if err := check(r, "identity:list_regions", policy.Target{}); err != nil {
		return err
	}
	out := []v3.Region{}
	for _, rg := range a.svc.ListRegions() {
		out = append(out, a.region(rg))
	}
	return server.JSON(w, http.StatusOK, map[string]any{"regions": out, "links": a.listLinks(r)})
}

func (a *API) getRegion(w http.ResponseWriter, r *http.Request) error {
	if err := check(r, "identity:get_region", policy.Target{}); err != nil {
		return err
	}
	rg, err := a.svc.GetRegion(r.PathValue("id"))
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusOK, map[string]any{"region": a.region(rg)})
}
