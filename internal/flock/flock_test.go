package flock

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSecondOpenerIsRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	a, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := Lock(a, "log device"); err != nil {
		t.Fatal(err)
	}
	b, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = Lock(b, "log device")
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second Lock = %v; want ErrInUse", err)
	}
	t.Log(err)
	if err := Unlock(a); err != nil {
		t.Fatal(err)
	}
	if err := Lock(b, "log device"); err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
}

func TestCloseReleases(t *testing.T) {
	p := filepath.Join(t.TempDir(), "leg")
	a, _ := os.Create(p)
	if err := Lock(a, "leg"); err != nil {
		t.Fatal(err)
	}
	a.Close()
	b, _ := os.OpenFile(p, os.O_RDWR, 0)
	defer b.Close()
	if err := Lock(b, "leg"); err != nil {
		t.Fatalf("Lock after Close: %v", err)
	}
}
