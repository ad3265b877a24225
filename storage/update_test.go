package storage

import (
	"errors"
	"testing"
)

// TestRetry: Retry tries until an attempt is done or fails, and gives up
// with ErrConflict after UpdateAttempts tries.
func TestRetry(t *testing.T) {
	tries := 0
	if err := Retry(func() (bool, error) { tries++; return tries == 3, nil }); err != nil || tries != 3 {
		t.Fatalf("done on the third try: %v after %d tries; want nil after 3", err, tries)
	}
	boom := errors.New("boom")
	tries = 0
	if err := Retry(func() (bool, error) { tries++; return false, boom }); err != boom || tries != 1 {
		t.Fatalf("failing attempt: %v after %d tries; want boom after 1", err, tries)
	}
	tries = 0
	if err := Retry(func() (bool, error) { tries++; return false, nil }); !errors.Is(err, ErrConflict) || tries != UpdateAttempts {
		t.Fatalf("never done: %v after %d tries; want ErrConflict after %d", err, tries, UpdateAttempts)
	}
}
