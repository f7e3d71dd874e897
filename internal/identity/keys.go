package identity

import "strings"

// Key layout under the store. Name indexes make names unique by transaction.
const (
	prefix        = "/nimbo/identity/"
	pDomains      = prefix + "domains/"
	pProjects     = prefix + "projects/"
	pUsers        = prefix + "users/"
	pRoles        = prefix + "roles/"
	pAssign       = prefix + "assignments/" // <scopeType>/<scopeID>/<userID>/<roleID>
	pImplies      = prefix + "implies/"     // <priorID>/<impliedID>
	pAppCreds     = prefix + "appcreds/"
	pRevoked      = prefix + "revoked/" // <auditID>, with a TTL until the token's expiry
	pServices     = prefix + "services/"
	pEndpoints    = prefix + "endpoints/"
	pRegions      = prefix + "regions/"
	pNames        = prefix + "names/" // <kind>/<container>/<name> -> id
	kTokenKeys    = prefix + "tokenkeys"
	kBootstrapped = prefix + "bootstrapped"
)

func domainKey(id string) string   { return pDomains + id }
func projectKey(id string) string  { return pProjects + id }
func userKey(id string) string     { return pUsers + id }
func roleKey(id string) string     { return pRoles + id }
func appCredKey(id string) string  { return pAppCreds + id }
func serviceKey(id string) string  { return pServices + id }
func endpointKey(id string) string { return pEndpoints + id }
func regionKey(id string) string   { return pRegions + id }
func revokedKey(audit string) string {
	return pRevoked + audit
}

func assignKey(a Assignment) string {
	return pAssign + string(a.ScopeType) + "/" + a.ScopeID + "/" + a.UserID + "/" + a.RoleID
}

// assignUserPrefix lists a user's roles on one target.
func assignUserPrefix(st ScopeType, scopeID, userID string) string {
	return pAssign + string(st) + "/" + scopeID + "/" + userID + "/"
}

func parseAssignKey(k string) (Assignment, bool) {
	parts := strings.Split(strings.TrimPrefix(k, pAssign), "/")
	if len(parts) != 4 {
		return Assignment{}, false
	}
	return Assignment{ScopeType: ScopeType(parts[0]), ScopeID: parts[1], UserID: parts[2], RoleID: parts[3]}, true
}

func impliesKey(prior, implied string) string { return pImplies + prior + "/" + implied }

// nameKey is the uniqueness index of a name within its container (a domain ID
// for projects and users, a user ID for application credentials, "-" for
// global names). Names are unique as given (case-sensitive).
func nameKey(kind, container, name string) string {
	return pNames + kind + "/" + container + "/" + name
}
