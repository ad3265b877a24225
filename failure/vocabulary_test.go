package failure_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// renderers are the folders (from the module root) whose code renders
// answers and so may ask failure.Status for an HTTP status: the admin
// API's writer, the data plane's refusal (engine), the console and the
// login portal. Everything else classifies with kinds and errors.Is.
var renderers = map[string]bool{
	"adminapi":                true,
	"engine":                  true,
	"console":                 true,
	"plugin/twofactor/portal": true,
}

const failureImport = "github.com/gatehouse-auth/gatehouse/failure"

// statusMisuses returns, for one Go source file in folder dir, each place
// that decides by an HTTP status instead of a kind: failure.Status
// compared (==, <, a switch on it) anywhere, or called at all outside the
// renderers.
func statusMisuses(t *testing.T, fset *token.FileSet, dir, name string, src any) []string {
	t.Helper()
	f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	local := ""
	for _, imp := range f.Imports {
		if path, _ := strconv.Unquote(imp.Path.Value); path == failureImport {
			local = "failure"
			if imp.Name != nil {
				local = imp.Name.Name
			}
		}
	}
	if local == "" {
		return nil
	}
	isStatus := func(e ast.Expr) bool {
		call, ok := ast.Unparen(e).(*ast.CallExpr)
		if !ok {
			return false
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return false
		}
		pkg, ok := sel.X.(*ast.Ident)
		return ok && pkg.Name == local && sel.Sel.Name == "Status"
	}
	var found []string
	report := func(n ast.Node, what string) {
		found = append(found, fset.Position(n.Pos()).String()+": "+what)
	}
	compared := map[ast.Expr]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.BinaryExpr:
			switch n.Op {
			case token.EQL, token.NEQ, token.LSS, token.LEQ, token.GTR, token.GEQ:
				for _, side := range []ast.Expr{n.X, n.Y} {
					if isStatus(side) {
						compared[ast.Unparen(side)] = true
						report(n, "failure.Status compared; test the kind with errors.Is (or failure.IsCallerError)")
					}
				}
			}
		case *ast.SwitchStmt:
			if n.Tag != nil && isStatus(n.Tag) {
				compared[ast.Unparen(n.Tag)] = true
				report(n, "switch on failure.Status; test the kind with errors.Is")
			}
		case *ast.CallExpr:
			if isStatus(n) && !renderers[dir] && !compared[n] {
				report(n, "failure.Status outside a renderer; domain code tests kinds with errors.Is")
			}
		}
		return true
	})
	return found
}

// TestNoStatusDecisionsInDomainCode keeps HTTP statuses out of decisions:
// no code outside the renderers asks for failure.Status, and no code
// compares it. It walks every non-test Go file of the module.
func TestNoStatusDecisionsInDomainCode(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		files++
		for _, m := range statusMisuses(t, fset, filepath.ToSlash(rel), path, nil) {
			t.Error(m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("walked only %d Go files under %s", files, root)
	}
}

// TestStatusMisuseIsFound: the check above finds what it looks for.
func TestStatusMisuseIsFound(t *testing.T) {
	const src = `package x

import (
	"net/http"

	fail "github.com/gatehouse-auth/gatehouse/failure"
)

func f(err error) {
	if fail.Status(err) == http.StatusNotFound {}
	if 500 <= (fail.Status(err)) {}
	switch fail.Status(err) {}
	_ = fail.Status(err)
	_ = fail.Message(err)
}
`
	fset := token.NewFileSet()
	if got := statusMisuses(t, fset, "account", "x.go", src); len(got) != 4 {
		t.Errorf("in domain code: %d findings, want 4 (three comparisons, one call):\n%s", len(got), strings.Join(got, "\n"))
	}
	if got := statusMisuses(t, fset, "adminapi", "x.go", src); len(got) != 3 {
		t.Errorf("in a renderer: %d findings, want 3 (the comparisons):\n%s", len(got), strings.Join(got, "\n"))
	}
	if got := statusMisuses(t, fset, "account", "x.go", strings.Replace(src, `fail "github.com/gatehouse-auth/gatehouse/failure"`, `fail "example.com/other"`, 1)); len(got) != 0 {
		t.Errorf("another package's Status: %d findings, want none:\n%s", len(got), strings.Join(got, "\n"))
	}
}
