package networkapi

import (
	"net/http"
	"slices"
	"strings"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/server"
)

// kindOf is the collection a tag URL names (/networking/v2.0/<kind>/<id>/tags...).
func kindOf(r *http.Request) string {
	rest := strings.TrimPrefix(r.URL.Path, Prefix+"/v2.0/")
	kind, _, _ := strings.Cut(rest, "/")
	return kind
}

func (a *API) setTags(w http.ResponseWriter, r *http.Request, status int, f func([]string) ([]string, error)) error {
	tags, err := a.svc.SetTags(r.Context(), creds(r), kindOf(r), r.PathValue("id"), f)
	if err != nil {
		return err
	}
	if status == http.StatusNoContent || status == http.StatusCreated {
		w.WriteHeader(status)
		return nil
	}
	return server.JSON(w, status, map[string]any{"tags": tags})
}

func (a *API) getTags(w http.ResponseWriter, r *http.Request) error {
	tags, err := a.svc.Tags(creds(r), kindOf(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	return server.JSON(w, http.StatusOK, map[string]any{"tags": tagsOf(tags)})
}

func (a *API) replaceTags(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Tags *[]string `json:"tags"`
	}
	if err := decodeInto(mustRead(r), &body); err != nil {
		return err
	}
	if body.Tags == nil {
		return errdefs.Invalidf("Invalid input: 'tags' is required.")
	}
	return a.setTags(w, r, http.StatusOK, func([]string) ([]string, error) { return *body.Tags, nil })
}

func (a *API) deleteTags(w http.ResponseWriter, r *http.Request) error {
	return a.setTags(w, r, http.StatusNoContent, func([]string) ([]string, error) { return nil, nil })
}

func (a *API) addTag(w http.ResponseWriter, r *http.Request) error {
	tag := r.PathValue("tag")
	return a.setTags(w, r, http.StatusCreated, func(t []string) ([]string, error) { return append(t, tag), nil })
}

func (a *API) removeTag(w http.ResponseWriter, r *http.Request) error {
	tag := r.PathValue("tag")
	return a.setTags(w, r, http.StatusNoContent, func(t []string) ([]string, error) {
		if !slices.Contains(t, tag) {
			return nil, errdefs.Typed("TagNotFound", errdefs.NotFoundf("Tag %s could not be found.", tag))
		}
		return slices.DeleteFunc(t, func(s string) bool { return s == tag }), nil
	})
}

func (a *API) checkTag(w http.ResponseWriter, r *http.Request) error {
	tags, err := a.svc.Tags(creds(r), kindOf(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	if !slices.Contains(tags, r.PathValue("tag")) {
		return errdefs.Typed("TagNotFound", errdefs.NotFoundf("Tag %s could not be found.", r.PathValue("tag")))
	}
	return server.NoContent(w)
}
