// Command xcaddycmd turns xcaddy.json, the build manifest operators use,
// into the `xcaddy build` command line, prints it, and with -run runs it.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// manifest is the shape of xcaddy.json.
type manifest struct {
	// CaddyVersion is the Caddy release to build, e.g. "v2.11.9".
	CaddyVersion string `json:"caddy_version"`
	// Output is the binary to write.
	Output string `json:"output"`
	// Modules are the plugins to include.
	Modules []struct {
		// Path is the module path, optionally with @version.
		Path string `json:"path"`
		// Replace points the module at a local checkout.
		Replace string `json:"replace,omitempty"`
	} `json:"modules"`
}

func main() {
	run := flag.Bool("run", false, "run the command instead of only printing it")
	flag.Parse()
	path := "xcaddy.json"
	if flag.NArg() > 0 {
		path = flag.Arg(0)
	}
	args, err := commandLine(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "xcaddycmd:", err)
		os.Exit(2)
	}
	fmt.Println(strings.Join(args, " "))
	if !*run {
		return
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "xcaddycmd:", err)
		os.Exit(1)
	}
}

func commandLine(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if m.CaddyVersion == "" || len(m.Modules) == 0 {
		return nil, fmt.Errorf("%s: caddy_version and at least one module are required", path)
	}
	args := []string{"xcaddy", "build", m.CaddyVersion}
	for _, mod := range m.Modules {
		with := mod.Path
		if mod.Replace != "" {
			with += "=" + mod.Replace
		}
		args = append(args, "--with", with)
	}
	if m.Output != "" {
		args = append(args, "--output", m.Output)
	}
	return args, nil
}
