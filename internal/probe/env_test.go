package probe

import "testing"

func TestAuthOptionsFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	ao, err := authOptionsFromEnv(env(map[string]string{
		"OS_AUTH_URL": "http://x/v3", "OS_USERNAME": "admin", "OS_PASSWORD": "pw",
		"OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_NAME": "admin", "OS_PROJECT_DOMAIN_NAME": "Dom",
	}))
	if err != nil || ao.DomainName != "Default" || ao.Scope == nil || ao.Scope.ProjectName != "admin" || ao.Scope.DomainName != "Dom" {
		t.Fatalf("openrc-style env: %+v %+v %v", ao, ao.Scope, err)
	}
	ao, err = authOptionsFromEnv(env(map[string]string{"OS_AUTH_URL": "u", "OS_USERNAME": "a", "OS_PASSWORD": "p", "OS_PROJECT_ID": "pid", "OS_PROJECT_DOMAIN_NAME": "D"}))
	if err != nil || ao.Scope.ProjectID != "pid" || ao.Scope.DomainName != "" {
		t.Fatalf("project by ID: %+v %v", ao.Scope, err)
	}
	ao, err = authOptionsFromEnv(env(map[string]string{"OS_AUTH_URL": "u", "OS_APPLICATION_CREDENTIAL_ID": "ac", "OS_APPLICATION_CREDENTIAL_SECRET": "s"}))
	if err != nil || ao.ApplicationCredentialID != "ac" || ao.Scope != nil {
		t.Fatalf("application credential: %+v %v", ao, err)
	}
	for name, m := range map[string]map[string]string{
		"no url":      {"OS_USERNAME": "a", "OS_PASSWORD": "p"},
		"no user":     {"OS_AUTH_URL": "u", "OS_PASSWORD": "p"},
		"no password": {"OS_AUTH_URL": "u", "OS_USERNAME": "a"},
	} {
		if _, err := authOptionsFromEnv(env(m)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
