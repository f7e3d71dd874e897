package identity

import (
	"context"
	"slices"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// Interfaces every registered service gets an endpoint for.
var Interfaces = []string{"public", "internal", "admin"}

// CatalogEntry is one service of a token's catalog with its endpoints.
type CatalogEntry struct {
	Service   CatalogService
	Endpoints []Endpoint
}

// Catalog returns the enabled services with their enabled endpoints.
func (s *Service) Catalog() []CatalogEntry {
	eps := list[Endpoint](s, pEndpoints)
	var out []CatalogEntry
	for _, svc := range list[CatalogService](s, pServices) {
		if !svc.Enabled {
			continue
		}
		e := CatalogEntry{Service: svc}
		for _, ep := range eps {
			if ep.ServiceID == svc.ID && ep.Enabled {
				e.Endpoints = append(e.Endpoints, ep)
			}
		}
		out = append(out, e)
	}
	return out
}

// GetService returns a catalog service.
func (s *Service) GetService(id string) (CatalogService, error) {
	v, _, ok := get[CatalogService](s, serviceKey(id))
	if !ok {
		return v, errdefs.NotFoundf("Could not find service: %s.", id)
	}
	return v, nil
}

// ListServices lists catalog services, optionally of one type.
func (s *Service) ListServices(typ string) []CatalogService {
	return slices.DeleteFunc(list[CatalogService](s, pServices), func(v CatalogService) bool {
		return typ != "" && v.Type != typ
	})
}

// GetEndpoint returns an endpoint.
func (s *Service) GetEndpoint(id string) (Endpoint, error) {
	v, _, ok := get[Endpoint](s, endpointKey(id))
	if !ok {
		return v, errdefs.NotFoundf("Could not find endpoint: %s.", id)
	}
	return v, nil
}

// EndpointFilter selects endpoints.
type EndpointFilter struct{ ServiceID, Interface, RegionID string }

// ListEndpoints lists endpoints.
func (s *Service) ListEndpoints(f EndpointFilter) []Endpoint {
	return slices.DeleteFunc(list[Endpoint](s, pEndpoints), func(e Endpoint) bool {
		return (f.ServiceID != "" && e.ServiceID != f.ServiceID) || (f.Interface != "" && e.Interface != f.Interface) ||
			(f.RegionID != "" && e.RegionID != f.RegionID)
	})
}

// GetRegion returns a region.
func (s *Service) GetRegion(id string) (Region, error) {
	v, _, ok := get[Region](s, regionKey(id))
	if !ok {
		return v, errdefs.NotFoundf("Could not find region: %s.", id)
	}
	return v, nil
}

// ListRegions lists regions.
func (s *Service) ListRegions() []Region { return list[Region](s, pRegions) }

// RegisterService puts a service in the catalog with one endpoint per
// interface at url in region, creating or updating it (idempotent). Services
// call it when they start so the catalog lists exactly what exists.
func (s *Service) RegisterService(ctx context.Context, typ, name, description, region, url string) error {
	return s.retry(ctx, func() (store.Txn, error) {
		var t store.Txn
		if _, _, ok := get[Region](s, regionKey(region)); !ok {
			t.Ops = append(t.Ops, put(regionKey(region), Region{ID: region}))
		}
		var svc *CatalogService
		for _, v := range list[CatalogService](s, pServices) {
			if v.Type == typ && v.Name == name {
				svc = &v
				break
			}
		}
		if svc == nil {
			svc = &CatalogService{ID: NewID(), Type: typ, Name: name, Description: description, Enabled: true}
			t.Conds = append(t.Conds, absent(serviceKey(svc.ID)))
			t.Ops = append(t.Ops, put(serviceKey(svc.ID), svc))
		}
		eps := s.ListEndpoints(EndpointFilter{ServiceID: svc.ID, RegionID: region})
		for _, itf := range Interfaces {
			i := slices.IndexFunc(eps, func(e Endpoint) bool { return e.Interface == itf })
			if i < 0 {
				ep := Endpoint{ID: NewID(), ServiceID: svc.ID, Interface: itf, RegionID: region, URL: url, Enabled: true}
				t.Ops = append(t.Ops, put(endpointKey(ep.ID), ep))
				continue
			}
			if eps[i].URL != url || !eps[i].Enabled {
				_, rev, _ := get[Endpoint](s, endpointKey(eps[i].ID))
				ep := eps[i]
				ep.URL, ep.Enabled = url, true
				t.Conds = append(t.Conds, atRev(endpointKey(ep.ID), rev))
				t.Ops = append(t.Ops, put(endpointKey(ep.ID), ep))
			}
		}
		return t, nil
	})
}
