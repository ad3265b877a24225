package caddymodule

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// TestPromptInterruptedRestoresEcho: Ctrl-C at a password prompt ends the
// command with status 130 and the terminal echoing again. It was killed by
// the signal with the echo term.ReadPassword had turned off still off, and
// the operator's shell then showed nothing of what was typed. A SIGTERM
// (a supervisor's, a `timeout`) ends it with status 143, as a shell
// reports a command SIGTERM ended, not 130, which says Ctrl-C.
func TestPromptInterruptedRestoresEcho(t *testing.T) {
	if os.Getenv("GATEHOUSE_TEST_PROMPT") == "1" { // the command at the prompt, on the terminal
		_, err := readSecret(&cobra.Command{}, "password", true)
		fmt.Println("readSecret returned:", err)
		os.Exit(0)
	}
	t.Run("Ctrl-C", func(t *testing.T) {
		interruptPrompt(t, 130, func(master *os.File, _ *exec.Cmd) error {
			_, err := master.Write([]byte{3})
			return err
		})
	})
	t.Run("SIGTERM", func(t *testing.T) {
		interruptPrompt(t, 143, func(_ *os.File, cmd *exec.Cmd) error { return cmd.Process.Signal(syscall.SIGTERM) })
	})
}

// interruptPrompt runs the command at a password prompt on a terminal,
// interrupts it there and checks that it exits with status want, the
// terminal echoing again.
func interruptPrompt(t *testing.T, want int, interrupt func(master *os.File, cmd *exec.Cmd) error) {
	master, slave := openPTY(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestPromptInterruptedRestoresEcho$")
	cmd.Env = append(os.Environ(), "GATEHOUSE_TEST_PROMPT=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 64)
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := master.Read(buf)
			if err != nil {
				return
			}
			seen <- string(buf[:n])
		}
	}()
	var shown strings.Builder
	for deadline := time.After(20 * time.Second); !strings.Contains(shown.String(), "password: "); {
		select {
		case s := <-seen:
			shown.WriteString(s)
		case <-deadline:
			_ = cmd.Process.Kill()
			t.Fatalf("no prompt; the terminal showed %q", shown.String())
		}
	}
	// The prompt is written just before the echo is turned off.
	for start := time.Now(); echo(t, slave); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			_ = cmd.Process.Kill()
			t.Fatal("the echo stays on at the prompt; the test proves nothing")
		}
	}
	if err := interrupt(master, cmd); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != want {
		t.Errorf("exit status: %d (%v); want %d", code, err, want)
	}
	if !echo(t, slave) {
		t.Error("the terminal's echo is still off after the prompt was interrupted")
	}
}

// openPTY opens a pseudo-terminal, closed at the test's end.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}

// echo reports whether the terminal tty echoes what is typed.
func echo(t *testing.T, tty *os.File) bool {
	t.Helper()
	attrs, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return attrs.Lflag&unix.ECHO != 0
}
