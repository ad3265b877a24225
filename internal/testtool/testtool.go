// Package testtool finds the external programs tests run (oathtool,
// slapd, curl, …).
package testtool

import (
	"os"
	"os/exec"
	"testing"
)

// Require returns the path of the program name. When it is not on PATH
// the test fails if GATEHOUSE_REQUIRE_TOOLS=1 (make test sets it and
// installs the tools), and is skipped otherwise.
func Require(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("GATEHOUSE_REQUIRE_TOOLS") == "1" {
		t.Fatalf("%s is required (make test installs it)", name)
	}
	t.Skipf("%s not installed", name)
	return ""
}
