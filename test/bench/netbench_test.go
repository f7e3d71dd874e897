package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Tests of the driver's helpers (no server, no root); the measurements
// themselves are never asserted.

func TestLogField(t *testing.T) {
	line := `time=2026-11-25T02:15:07.090Z level=ERROR msg="agent: reconcile failed; retrying" err="garbage collection: hostnet: list links: \"x\" inconsistent" took=57.8ms`
	for key, want := range map[string]string{
		"level": "ERROR",
		"msg":   "agent: reconcile failed; retrying",
		"err":   `garbage collection: hostnet: list links: "x" inconsistent`,
		"took":  "57.8ms",
		"none":  "",
	} {
		if got := logField(line, key); got != want {
			t.Errorf("logField(%s) = %q, want %q", key, got, want)
		}
	}
}

func TestScanLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nimbo.log")
	before := "time=1 level=ERROR msg=\"before the offset\"\n"
	log := before +
		"time=2 level=INFO msg=\"dhcp: serving\" hosts=3\n" +
		"time=3 level=WARN msg=\"slow fdatasync\" component=etcd took=1.8s\n" +
		"time=4 level=ERROR msg=\"agent: reconcile failed; retrying\" err=\"list links: inconsistent\" took=5ms\n" +
		"time=5 level=ERROR msg=\"agent: reconcile failed; retrying\" err=\"list links: inconsistent\" took=6ms\n" +
		"plain output line\n"
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	groups, err := scanLog(path, int64(len(before)))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, g := range groups {
		got = append(got, strings.Join([]string{g.key, strings.Repeat("+", g.count)}, " "))
	}
	want := []string{"ERROR agent: reconcile failed; retrying: list links: inconsistent ++", "WARN slow fdatasync +"}
	if !slices.Equal(got, want) {
		t.Errorf("groups = %q, want %q", got, want)
	}
	if !groups[0].err || groups[1].err || !strings.Contains(groups[0].first, "time=4") {
		t.Errorf("groups = %+v", groups)
	}
}

func TestParseCheckpoints(t *testing.T) {
	got, err := parseCheckpoints(" 1000, 10000 ")
	if err != nil || !slices.Equal(got, []int{1000, 10000}) {
		t.Errorf("parseCheckpoints = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "10,5", "10,10", "x"} {
		if _, err := parseCheckpoints(bad); err == nil {
			t.Errorf("parseCheckpoints(%q) did not fail", bad)
		}
	}
}

func TestFmtInt(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 11300: "11,300", 1234567: "1,234,567", -1000: "-1,000"} {
		if got := fmtInt(n); got != want {
			t.Errorf("fmtInt(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestReadOpenrc(t *testing.T) {
	t.Setenv("OS_CLOUD", "elsewhere")
	t.Setenv("https_proxy", "http://proxy")
	path := filepath.Join(t.TempDir(), "openrc")
	rc := "# nimbo admin credentials\nexport OS_AUTH_URL='http://127.0.0.1:5000/v3'\nexport OS_PASSWORD='it'\\''s'\nexport OS_USERNAME=admin\n"
	if err := os.WriteFile(path, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	env, err := readOpenrc(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"OS_AUTH_URL=http://127.0.0.1:5000/v3", "OS_PASSWORD=it's", "OS_USERNAME=admin"} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %q", want)
		}
	}
	for _, kv := range env {
		if strings.HasPrefix(kv, "OS_CLOUD=") || strings.HasPrefix(kv, "https_proxy=") {
			t.Errorf("env keeps %q", kv)
		}
	}
	if err := os.WriteFile(path, []byte("export OS_USERNAME=admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readOpenrc(path); err == nil {
		t.Error("an openrc without OS_PASSWORD was accepted")
	}
}
