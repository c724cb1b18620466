package e2e

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if envVal != nil && envVal.dir != "" && os.Getenv("DMLOG_E2E_KEEP") != "1" {
		os.RemoveAll(envVal.dir)
	}
	os.Exit(code)
}
