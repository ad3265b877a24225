package engine_test

import (
	"errors"
	"fmt"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/engine/enginetest"
	"github.com/gatehouse-auth/gatehouse/storage"
)

// TestLogFailureIsThinned: requests failed because the store is down (or
// for an internal error), from every front end together, write at most
// one line a second each, with the count of the failures it stands for:
// anyone can send such requests, and a line each would flood the log.
func TestLogFailureIsThinned(t *testing.T) {
	e := enginetest.New(t, engine.Config{}, nil)
	core, logs := observer.New(zap.ErrorLevel)
	e.Logger = zap.New(core)
	down := fmt.Errorf("reading: %w", storage.ErrUnavailable)
	for i := range 100 {
		e.LogFailure([]string{"login portal", "console", "token endpoint"}[i%3], down)
		e.LogFailure("console", errors.New("a record failed authentication"))
	}
	// One line a second: a few, were the loop stalled by a busy machine.
	if n := logs.FilterMessageSnippet("store unavailable").Len(); n < 1 || n > 3 {
		t.Errorf("%d lines for 100 requests failed with the store down; want about 1", n)
	}
	if n := logs.FilterMessageSnippet("internal error").Len(); n < 1 || n > 3 {
		t.Errorf("%d lines for 100 internal errors; want about 1", n)
	}
}
