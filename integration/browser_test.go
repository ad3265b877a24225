package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
)

// headlessChromium starts the real Chromium, headless, with a fresh
// profile that trusts any certificate (tls internal: a CA made for the
// test), and returns a context for chromedp that ends after limit.
func headlessChromium(t *testing.T, limit time.Duration) context.Context {
	t.Helper()
	chromium := harness.RequireTool(t, "chromium")
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, limit)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	return ctx
}

// waitForScript polls the page until the JavaScript expression is true.
// chromedp's own queries (WaitVisible, Text) follow the document through
// DOM events, and can lose track of a page that replaced another right
// after a submit: they then wait for ever on a page that is already
// there (seen once in tens of runs: the server had answered the
// redirected GET, and the wait used up the test's 90 s). Runtime.evaluate
// reads the page as it is, so the steps right after a sign-in's redirect
// use it; an error (the page between two documents) is tried again.
func waitForScript(ctx context.Context, expr string) error {
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last answer %v, %v)", expr, ctx.Err(), ok, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
