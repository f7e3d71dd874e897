package metadata

import (
	"fmt"
	"net/http"
	"path"
	"strings"
)

// ec2Versions are the EC2-compatible API's versions, oldest first, exactly
// as Nova lists them (nova/api/metadata/base.py VERSIONS).
var ec2Versions = []string{
	"1.0",
	"2007-01-19",
	"2007-03-01",
	"2007-08-29",
	"2007-10-10",
	"2007-12-15",
	"2008-02-01",
	"2008-09-01",
	"2009-04-04",
}

// openStackVersions are the OpenStack API's versions, oldest first, exactly
// as Nova lists them (OPENSTACK_VERSIONS: Folsom, Grizzly, Havana, Liberty,
// Newton twice, Ocata, Rocky, Victoria, Epoxy).
var openStackVersions = []string{
	"2012-08-10",
	"2013-04-04",
	"2013-10-17",
	"2015-10-15",
	"2016-06-30",
	"2016-10-06",
	"2017-02-22",
	"2018-08-27",
	"2020-10-14",
	"2025-04-04",
}

// Latest is the version name that stands for the newest version in both
// trees.
const Latest = "latest"

// EC2Versions returns the versions of the EC2-compatible metadata API, oldest
// first, without Latest: what Nova lists at / before "latest".
func EC2Versions() []string { return append([]string(nil), ec2Versions...) }

// OpenStackVersions returns the versions of the OpenStack metadata API,
// oldest first, without Latest: what Nova lists at /openstack before
// "latest".
func OpenStackVersions() []string { return append([]string(nil), openStackVersions...) }

// CleanPath normalises a request path the way Nova does before routing it
// (posixpath.normpath): a leading slash, no trailing slash, no empty, "."
// or ".." elements. "/openstack/" becomes "/openstack"; "" becomes "/".
func CleanPath(p string) string {
	return path.Clean("/" + p)
}

// versionIndex returns the body Nova answers for an index path, if p (a
// cleaned path) is one: the EC2 versions at / and /ec2, the OpenStack
// versions at /openstack; each list ends with "latest", lines joined by
// "\n" with no newline at the end.
func versionIndex(p string) (string, bool) {
	switch p {
	case "/", "/ec2":
		return strings.Join(append(EC2Versions(), Latest), "\n"), true
	case "/openstack":
		return strings.Join(append(OpenStackVersions(), Latest), "\n"), true
	}
	return "", false
}

// ServeVersions answers r if its path is one of the version indexes (/,
// /ec2, /openstack, with or without a trailing slash) with Nova's text, and
// reports whether it did. Methods other than GET and HEAD get a 405. A
// Content calls it before routing instance paths.
func ServeVersions(w http.ResponseWriter, r *http.Request) bool {
	body, ok := versionIndex(CleanPath(r.URL.Path))
	if !ok {
		return false
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeText(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s\n", r.Method, r.URL.Path))
		return true
	}
	writeText(w, http.StatusOK, body)
	return true
}

// DefaultContent is the Content used until the compute service provides the
// instances' data: it answers the version indexes and, for every other path,
// a 404 that says why there is no data for the requester's port.
type DefaultContent struct{}

// Serve implements Content.
func (DefaultContent) Serve(w http.ResponseWriter, r *http.Request, who Requester) {
	if ServeVersions(w, r) {
		return
	}
	if !who.HasInstance() {
		owner := who.DeviceOwner
		if owner == "" {
			owner = "none"
		}
		writeText(w, http.StatusNotFound, fmt.Sprintf("no instance is attached to port %s (device_owner %s)\n", who.PortID, owner))
		return
	}
	writeText(w, http.StatusNotFound, fmt.Sprintf("no metadata is available for instance %s (port %s)\n", who.DeviceID, who.PortID))
}

// writeText writes a text/plain response, as Nova's are.
func writeText(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=UTF-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
