package cloud

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

type openrc struct {
	AuthURL       string
	Password      string
	PasswordKnown bool
	Region        string
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// writeOpenrc writes the admin credentials file (mode 0600) atomically.
func writeOpenrc(path string, o openrc) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# nimbo admin credentials; use: . %s\n", path)
	fmt.Fprintf(&b, "export OS_AUTH_URL=%s\n", shellQuote(o.AuthURL))
	b.WriteString("export OS_IDENTITY_API_VERSION=3\nexport OS_AUTH_TYPE=password\n")
	b.WriteString("export OS_USERNAME=admin\nexport OS_PROJECT_NAME=admin\n")
	b.WriteString("export OS_USER_DOMAIN_NAME=Default\nexport OS_PROJECT_DOMAIN_NAME=Default\n")
	if o.PasswordKnown {
		fmt.Fprintf(&b, "export OS_PASSWORD=%s\n", shellQuote(o.Password))
	} else {
		b.WriteString("# The admin password is not known to this start: set OS_PASSWORD, or restart with --admin-password.\n")
	}
	fmt.Fprintf(&b, "export OS_REGION_NAME=%s\nexport OS_INTERFACE=public\n", shellQuote(o.Region))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readOpenrcPassword returns the OS_PASSWORD an earlier start wrote.
func readOpenrcPassword(path string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "export OS_PASSWORD=")
		if !ok {
			continue
		}
		if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
			return strings.ReplaceAll(v[1:len(v)-1], `'\''`, "'"), true
		}
		return v, true
	}
	return "", false
}
