package sms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// Webhook POSTs each message as JSON {"to","message"} to an SMS gateway.
// A transport error, a 429 or a 5xx answer is retried with exponential
// backoff; any other non-2xx answer fails at once.
type Webhook struct {
	url     string
	host    string
	header  http.Header
	timeout time.Duration
	retries int
	client  *http.Client
	backoff time.Duration
	// closed is set by Close: a send still in flight then leaves no idle
	// connection behind.
	closed atomic.Bool
	// cleartext is set for an http:// URL to another machine.
	cleartext bool
}

// WebhookOptions configure a Webhook.
type WebhookOptions struct {
	// URL is the gateway endpoint (http or https).
	URL string
	// Header is added to every request (e.g. an API key).
	Header http.Header
	// Timeout bounds each attempt (default 10 s).
	Timeout time.Duration
	// Retries is how many times a failed attempt is repeated (default 0).
	Retries int
	// Client is the HTTP client (default: a client with its own transport).
	Client *http.Client
}

// Limits of the webhook options.
const (
	MaxRetries     = 10
	DefaultTimeout = 10 * time.Second
)

// NewWebhook validates opts and returns the sender.
func NewWebhook(opts WebhookOptions) (*Webhook, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("SMS webhook URL must be an absolute http:// or https:// URL")
	}
	if opts.Timeout < 0 {
		return nil, fmt.Errorf("SMS webhook timeout must not be negative")
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Retries < 0 || opts.Retries > MaxRetries {
		return nil, fmt.Errorf("SMS webhook retries must be from 0 to %d", MaxRetries)
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(),
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return &Webhook{url: opts.URL, host: u.Host, header: opts.Header.Clone(), timeout: opts.Timeout,
		retries: opts.Retries, client: opts.Client, backoff: 200 * time.Millisecond,
		cleartext: u.Scheme == "http" && !loopbackHost(u.Hostname())}, nil
}

// Cleartext reports whether the webhook's URL is http:// to another
// machine than this one: every message (one-time codes, enrolment links,
// which show an authenticator secret) and the headers (the gateway's key)
// then cross the network unencrypted.
func (w *Webhook) Cleartext() bool { return w.cleartext }

// Host is the gateway's host (and port) as the URL names it: what logs
// may show of the URL, whose path or query may carry a key.
func (w *Webhook) Host() string { return w.host }

// loopbackHost reports whether host (a URL's host name, without port)
// names this machine: "localhost" or a loopback address.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Close closes the connections to the gateway kept for the next message,
// and those of a send still in flight once it ends: a sender a config
// reload replaced would otherwise hold them for the transport's idle
// timeout (90 s). A send after Close still works, on a new connection.
func (w *Webhook) Close() error {
	w.closed.Store(true)
	w.client.CloseIdleConnections()
	return nil
}

// Send implements Sender.
func (w *Webhook) Send(ctx context.Context, m Message) error {
	defer func() {
		if w.closed.Load() {
			w.client.CloseIdleConnections()
		}
	}()
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding SMS: %v", err)
	}
	delay := w.backoff
	for attempt := 0; ; attempt++ {
		var retry bool
		retry, err = w.attempt(ctx, body)
		if err == nil || !retry || attempt >= w.retries {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("SMS webhook %s: %v (gave up: %v)", w.host, err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
	if err != nil {
		return fmt.Errorf("SMS webhook %s: %v", w.host, err)
	}
	return nil
}

// attempt makes one POST and reports whether a failure is worth retrying.
// Its errors never include the URL (which may carry a gateway key) or the
// body.
func (w *Webhook) attempt(ctx context.Context, body []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return false, errors.New("building the request failed")
	}
	for name, values := range w.header {
		req.Header[name] = values
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return true, fmt.Errorf("no answer within %s", w.timeout)
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return true, fmt.Errorf("request failed: %v", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // drained for reuse; the status is the answer
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("gateway answered %s", resp.Status)
	default:
		return false, fmt.Errorf("gateway answered %s", resp.Status)
	}
}
