package smallbody

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestSlowBodyIsCutOff: over a real HTTP/1.1 connection, a body that
// trickles in is given up once the deadline passes (the handler gets an
// error, the connection closes), while a body sent at once is read whole
// and the deadline cleared after it: the handler may take longer than the
// deadline to answer, and the connection serves the next request.
func TestSlowBodyIsCutOff(t *testing.T) {
	const timeout = 300 * time.Millisecond
	readErr := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		done := within(w, timeout)
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<10))
		done()
		if r.URL.Path == "/slow" {
			readErr <- err
			return
		}
		time.Sleep(2 * timeout) // past the deadline: it must be cleared, or the request is cancelled
		fmt.Fprintf(w, "read %d bytes, context %v", len(body), r.Context().Err())
	}))
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	for range 2 { // two requests on one connection
		if _, err := io.WriteString(conn, "POST /quick HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"); err != nil {
			t.Fatal(err)
		}
		res, err := http.ReadResponse(rd, nil)
		if err != nil {
			t.Fatalf("a quick body's answer: %v", err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(got) != "read 5 bytes, context <nil>" {
			t.Fatalf("a quick body's answer: %q", got)
		}
	}

	slow, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	began := time.Now()
	if _, err := io.WriteString(slow, "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\na"); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() { // a byte now and then, as a slow-body attack sends
		for {
			select {
			case <-stop:
				return
			case <-time.After(timeout / 3):
				if _, err := slow.Write([]byte("a")); err != nil {
					return
				}
			}
		}
	}()
	select {
	case err := <-readErr:
		if err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Fatalf("a trickling body: %v; want a timeout", err)
		}
		if took := time.Since(began); took > 20*timeout {
			t.Fatalf("a trickling body was given up after %v; want about %v", took, timeout)
		}
	case <-time.After(time.Minute):
		t.Fatal("a trickling body was read for a minute")
	}
}
