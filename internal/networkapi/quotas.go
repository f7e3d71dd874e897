package networkapi

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/jsondec"
	"github.com/nimbo-cloud/nimbo/internal/policy"
	"github.com/nimbo-cloud/nimbo/internal/server"
)

// mustRead reads a (bounded) body; a read error becomes an empty body, which
// decoding then rejects with a 400.
func mustRead(r *http.Request) json.RawMessage {
	b, _ := io.ReadAll(io.LimitReader(r.Body, jsondec.MaxBody+1))
	return b
}

func (a *API) quotaTarget(r *http.Request, action string) (string, error) {
	project := r.PathValue("project")
	return project, policy.Check(action, creds(r), policy.Target{ProjectID: project})
}

func (a *API) getQuota(w http.ResponseWriter, r *http.Request) error {
	project, err := a.quotaTarget(r, "network:get_quota")
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusOK, map[string]any{"quota": a.svc.Quotas(project)})
}

func (a *API) defaultQuota(w http.ResponseWriter, r *http.Request) error {
	if _, err := a.quotaTarget(r, "network:get_quota"); err != nil {
		return err
	}
	return server.JSON(w, http.StatusOK, map[string]any{"quota": a.svc.DefaultQuotas()})
}

func (a *API) quotaDetails(w http.ResponseWriter, r *http.Request) error {
	project, err := a.quotaTarget(r, "network:get_quota")
	if err != nil {
		return err
	}
	used := a.svc.Usage(project)
	out := map[string]any{}
	for k, limit := range a.svc.Quotas(project) {
		out[k] = map[string]int{"limit": limit, "used": used[k], "reserved": 0}
	}
	return server.JSON(w, http.StatusOK, map[string]any{"quota": out})
}

func (a *API) listQuotas(w http.ResponseWriter, r *http.Request) error {
	if err := policy.Check("network:update_quota", creds(r), policy.Target{}); err != nil {
		return err
	}
	var out []map[string]any
	for _, p := range a.svc.OverriddenProjects() {
		q := map[string]any{"project_id": p, "tenant_id": p}
		for k, v := range a.svc.Quotas(p) {
			q[k] = v
		}
		out = append(out, q)
	}
	if out == nil {
		out = []map[string]any{}
	}
	return server.JSON(w, http.StatusOK, map[string]any{"quotas": out})
}

func (a *API) setQuota(w http.ResponseWriter, r *http.Request) error {
	project, err := a.quotaTarget(r, "network:update_quota")
	if err != nil {
		return err
	}
	var body struct {
		Quota map[string]int `json:"quota"`
	}
	if err := jsondec.Decode(r.Body, &body, true); err != nil {
		return err
	}
	if body.Quota == nil {
		return errdefs.Invalidf("Invalid input: 'quota' is required.")
	}
	q, err := a.svc.SetQuotas(r.Context(), project, body.Quota)
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusOK, map[string]any{"quota": q})
}

func (a *API) resetQuota(w http.ResponseWriter, r *http.Request) error {
	project, err := a.quotaTarget(r, "network:delete_quota")
	if err != nil {
		return err
	}
	if err := a.svc.ResetQuotas(r.Context(), project); err != nil {
		return err
	}
	return server.NoContent(w)
}
