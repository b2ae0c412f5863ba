package archrules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

const (
	modulePath = "github.com/blixard/blixard"
	apiV1      = modulePath + "/api/v1"
	coreTree   = modulePath + "/internal/core"
	stateTree  = modulePath + "/internal/state"
	schedTree  = modulePath + "/internal/sched"
)

// deterministicTree is a package tree (its root and every package below it)
// that must stay deterministic.
type deterministicTree struct {
	root string
	// required: the root package must exist. A tree that is not required is
	// skipped until someone writes it.
	required bool
	// mayImport lists the other Blixard trees this one may import, from the
	// "may import" column of DESIGN.md. A tree may always import its own
	// packages, and every tree may import apiV1 (that exact package: its
	// subpackage of gRPC stubs is I/O).
	mayImport []string
}

var deterministicTrees = []deterministicTree{
	{root: stateTree, required: true},
	{root: schedTree, required: true, mayImport: []string{stateTree}},
	{root: coreTree, required: true, mayImport: []string{stateTree, schedTree}},
}

// inTree reports whether importPath is root or a package below it.
func inTree(importPath, root string) bool {
	return importPath == root || strings.HasPrefix(importPath, root+"/")
}

// forbiddenImport returns why a package of tree may not import importPath, or
// "" if it may.
func forbiddenImport(tree deterministicTree, importPath string) string {
	switch {
	case importPath == "net" || inTree(importPath, "net"):
		return "network I/O"
	case inTree(importPath, "os"):
		return "operating system I/O (files, processes, environment, signals)"
	case importPath == "syscall" || inTree(importPath, "golang.org/x/sys"):
		return "system calls"
	case importPath == "io/ioutil":
		return "file I/O"
	case importPath == "crypto/rand":
		return "the global random source (take a seeded *rand.Rand instead)"
	case inTree(importPath, "google.golang.org/grpc"):
		return "gRPC: the network belongs to transport and server"
	case inTree(importPath, "github.com/cockroachdb/pebble"), inTree(importPath, "github.com/cockroachdb/pebble/v2"):
		return "Pebble: storage belongs to internal/store, driven from outside the core"
	case inTree(importPath, modulePath):
		if importPath == apiV1 || inTree(importPath, tree.root) {
			return ""
		}
		for _, allowed := range tree.mayImport {
			if inTree(importPath, allowed) {
				return ""
			}
		}
		return fmt.Sprintf("DESIGN.md lets %s import only api/v1%s", shortName(tree.root), mayImportSuffix(tree))
	}
	return ""
}

func shortName(importPath string) string {
	return strings.TrimPrefix(importPath, modulePath+"/")
}

func mayImportSuffix(tree deterministicTree) string {
	var b strings.Builder
	for _, p := range tree.mayImport {
		b.WriteString(", ")
		b.WriteString(shortName(p))
	}
	return b.String()
}

// wallClock lists the functions of package time that read the wall clock or
// wait on it. The core learns time from ticks and from timestamps in events.
var wallClock = map[string]bool{
	"Now": true, "Since": true, "Until": true,
	"Sleep": true, "After": true, "AfterFunc": true,
	"NewTimer": true, "NewTicker": true, "Tick": true,
}

// randAllowed lists the members of math/rand and math/rand/v2 the core may
// name: the types, and the constructors of an injectable, seeded source. Every
// other member is a package-level function drawing from the global source.
// The list is closed on purpose: a function added to math/rand in a later Go
// release is refused until someone adds it here knowingly.
var randAllowed = map[string]bool{
	// types
	"Rand": true, "Source": true, "Source64": true, "Zipf": true, "PCG": true, "ChaCha8": true,
	// constructors
	"New": true, "NewSource": true, "NewPCG": true, "NewChaCha8": true, "NewZipf": true,
}

// violation is one place in a source file that breaks a rule.
type violation struct {
	pos  token.Position
	rule string
}

func (v violation) String() string { return v.pos.String() + ": " + v.rule }

// checkSource checks the files of one package for the source rules: no wall
// clock, no global randomness, no goroutines. Names are resolved with go/types
// against stand-in imported packages (empty, named after their import path),
// so every identifier is resolved through the scopes of the files themselves:
// an aliased import is followed, and a variable that shadows an import is not
// mistaken for it. Type errors (unknown members of the stand-ins, references to
// other packages) are expected and ignored: only name resolution is needed.
func checkSource(fset *token.FileSet, files []*ast.File) []violation {
	info := &types.Info{Uses: map[*ast.Ident]types.Object{}}
	conf := types.Config{
		Importer:    standInImporter{},
		Error:       func(error) {}, // see above: errors are expected
		FakeImportC: true,
	}
	pkgName := "p"
	if len(files) > 0 {
		pkgName = files[0].Name.Name
	}
	_, _ = conf.Check(pkgName, fset, files, info)

	var found []violation
	report := func(n ast.Node, format string, args ...any) {
		found = append(found, violation{pos: fset.Position(n.Pos()), rule: fmt.Sprintf(format, args...)})
	}
	for _, f := range files {
		for _, spec := range f.Imports {
			p, err := strconv.Unquote(spec.Path.Value)
			if err != nil || spec.Name == nil || spec.Name.Name != "." {
				continue
			}
			if p == "time" || p == "math/rand" || p == "math/rand/v2" {
				report(spec, "dot import of %q hides its calls from this check: import it by name", p)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GoStmt:
				report(n, "go statement: the core never starts a goroutine; its driver owns concurrency")
			case *ast.SelectorExpr:
				x, ok := n.X.(*ast.Ident)
				if !ok {
					return true
				}
				pkg, ok := info.Uses[x].(*types.PkgName)
				if !ok {
					return true
				}
				member := n.Sel.Name
				switch importPath := pkg.Imported().Path(); importPath {
				case "time":
					if wallClock[member] {
						report(n, "time.%s reads or waits on the wall clock: time enters the core as ticks and event timestamps", member)
					}
				case "math/rand", "math/rand/v2":
					if !randAllowed[member] {
						report(n, "%s.%s (%s) draws from the global random source: use a *rand.Rand that the caller seeds", x.Name, member, importPath)
					}
				}
			}
			return true
		})
	}
	return found
}

// standInImporter gives every import an empty package, named the way the go
// tool names it by default: the last element of its path, skipping a major
// version suffix (math/rand/v2 is rand, go.etcd.io/raft/v3 is raft).
type standInImporter struct{}

func (standInImporter) Import(importPath string) (*types.Package, error) {
	name := path.Base(importPath)
	if isMajorVersion(name) {
		name = path.Base(path.Dir(importPath))
	}
	name = strings.TrimPrefix(name, "go-")
	if i := strings.IndexAny(name, ".-"); i > 0 {
		name = name[:i]
	}
	pkg := types.NewPackage(importPath, name)
	pkg.MarkComplete()
	return pkg, nil
}

func isMajorVersion(s string) bool {
	if len(s) < 2 || s[0] != 'v' {
		return false
	}
	_, err := strconv.Atoi(s[1:])
	return err == nil
}

// listedPackage holds the fields of `go list -json` this test reads.
type listedPackage struct {
	ImportPath     string
	Dir            string
	GoFiles        []string
	CgoFiles       []string
	IgnoredGoFiles []string // includes test files excluded by build constraints
	Imports        []string // of GoFiles and CgoFiles, not of tests
	Error          *struct{ Err string }
}

// sourceFiles returns every non-test Go file of the package, including those a
// build constraint leaves out on this machine: the core must be deterministic
// on every platform.
func (p listedPackage) sourceFiles() []string {
	var names []string
	names = append(names, p.GoFiles...)
	names = append(names, p.CgoFiles...)
	for _, name := range p.IgnoredGoFiles {
		if strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go") {
			names = append(names, name)
		}
	}
	return names
}

// goTool returns the go command that runs this test: `go test` puts its
// GOROOT/bin first on PATH.
func goTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := exec.LookPath(p); err != nil {
		t.Fatalf("cannot find the go tool on PATH or at %s: %v", p, err)
	}
	return p
}

// listTree runs `go list -e -json` over the tree under root and returns its
// packages that have Go files. It fails the test if the tree is required and
// its root package is missing or broken.
func listTree(t *testing.T, tree deterministicTree) []listedPackage {
	t.Helper()
	cmd := exec.Command(goTool(t), "list", "-e",
		"-json=ImportPath,Dir,GoFiles,CgoFiles,IgnoredGoFiles,Imports,Error",
		tree.root+"/...")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list %s/...: %v\n%s", tree.root, err, stderr.String())
	}

	var pkgs []listedPackage
	rootFound := false
	dec := json.NewDecoder(&stdout)
	for {
		var p listedPackage
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("decoding go list output for %s: %v", tree.root, err)
		}
		if len(p.sourceFiles()) == 0 {
			// Not found, or only test files: nothing to hold to the rules.
			continue
		}
		if p.Error != nil {
			t.Errorf("go list %s: %s", p.ImportPath, p.Error.Err)
			continue
		}
		if p.ImportPath == tree.root {
			rootFound = true
		}
		pkgs = append(pkgs, p)
	}
	if !rootFound {
		if tree.required {
			t.Fatalf("package %s does not exist or has no Go files; DESIGN.md requires it (go list said: %s)",
				tree.root, strings.TrimSpace(stderr.String()))
		}
		t.Logf("%s does not exist yet; nothing to check", tree.root)
	}
	return pkgs
}

// TestDeterministicCore holds every package of the deterministic trees to the
// import and source rules.
func TestDeterministicCore(t *testing.T) {
	for _, tree := range deterministicTrees {
		t.Run(shortName(tree.root), func(t *testing.T) {
			for _, p := range listTree(t, tree) {
				for _, imp := range p.Imports {
					if why := forbiddenImport(tree, imp); why != "" {
						t.Errorf("%s imports %s: %s", p.ImportPath, imp, why)
					}
				}

				fset := token.NewFileSet()
				var files []*ast.File
				for _, name := range p.sourceFiles() {
					f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
					if err != nil {
						t.Errorf("parsing %s: %v", name, err)
						continue
					}
					files = append(files, f)
					// Build-constrained files are not in go list's Imports.
					if !isIgnored(p, name) {
						continue
					}
					for _, spec := range f.Imports {
						imp, _ := strconv.Unquote(spec.Path.Value)
						if why := forbiddenImport(tree, imp); why != "" {
							t.Errorf("%s: imports %s: %s", fset.Position(spec.Pos()), imp, why)
						}
					}
				}
				for _, v := range checkSource(fset, files) {
					t.Errorf("%s", v)
				}
			}
		})
	}
}

func isIgnored(p listedPackage, name string) bool {
	for _, ignored := range p.IgnoredGoFiles {
		if ignored == name {
			return true
		}
	}
	return false
}

// TestSelfCheckSource feeds checkSource forged files: each must produce
// exactly the violations listed (by a fragment of the rule's text), no more.
func TestSelfCheckSource(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // one fragment per expected violation, in source order
	}{
		{
			name: "time.Now fires",
			src: `package p
import "time"
func now() time.Time { return time.Now() }`,
			want: []string{"time.Now"},
		},
		{
			name: "go statement fires",
			src: `package p
func f() {}
func g() { go f() }`,
			want: []string{"go statement"},
		},
		{
			name: "aliased math/rand fires",
			src: `package p
import mrand "math/rand"
func roll() int { return mrand.Intn(6) }`,
			want: []string{"mrand.Intn"},
		},
		{
			name: "seeded rand.New passes",
			src: `package p
import "math/rand"
func roll(seed int64) int {
	r := rand.New(rand.NewSource(seed))
	return r.Intn(6)
}`,
		},
		{
			name: "rand/v2 constructors and types pass",
			src: `package p
import "math/rand/v2"
type sim struct{ rng *rand.Rand; src rand.Source }
func newSim(a, b uint64) *sim {
	src := rand.NewPCG(a, b)
	_ = rand.NewChaCha8([32]byte{})
	return &sim{rng: rand.New(src), src: src}
}`,
		},
		{
			name: "rand/v2 package functions fire",
			src: `package p
import "math/rand/v2"
func f(xs []int) int {
	rand.Shuffle(len(xs), func(i, j int) { xs[i], xs[j] = xs[j], xs[i] })
	return rand.IntN(3) + int(rand.Float64())
}`,
			want: []string{"rand.Shuffle", "rand.IntN", "rand.Float64"},
		},
		{
			name: "rand.Seed fires",
			src: `package p
import "math/rand"
func init() { rand.Seed(1) }`,
			want: []string{"rand.Seed"},
		},
		{
			name: "parameter shadowing the rand import passes",
			src: `package p
import "math/rand"
func roll(rand *rand.Rand) int { return rand.Intn(6) }`,
		},
		{
			name: "aliased time fires on every clock function",
			src: `package p
import clock "time"
func f() {
	clock.Sleep(clock.Second)
	<-clock.After(clock.Since(clock.Unix(0, 0)))
	t := clock.NewTimer(1); _ = t
	_ = clock.AfterFunc
	_ = clock.NewTicker(1)
	_ = clock.Tick(1)
	_ = clock.Until(clock.Time{})
}`,
			want: []string{"time.Sleep", "time.After", "time.Since", "time.NewTimer", "time.AfterFunc",
				"time.NewTicker", "time.Tick", "time.Until"},
		},
		{
			name: "time.Now as a value fires",
			src: `package p
import "time"
var clock = time.Now`,
			want: []string{"time.Now"},
		},
		{
			name: "time values and arithmetic pass",
			src: `package p
import "time"
const lease = 10 * time.Second
func expired(now, start time.Time) bool { return now.Sub(start) > lease || now.After(time.Unix(0, 0)) }`,
		},
		{
			name: "a method named Now passes",
			src: `package p
type clock struct{}
func (clock) Now() int64 { return 0 }
func f(c clock) int64 { return c.Now() }`,
		},
		{
			name: "another package named time passes",
			src: `package p
import "example.com/virtual/time"
func f() { time.Now() }`,
		},
		{
			name: "dot import of time fires",
			src: `package p
import . "time"
func f() Time { return Now() }`,
			want: []string{`dot import of "time"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, "forged.go", tc.src, parser.SkipObjectResolution)
			if err != nil {
				t.Fatalf("forged source does not parse: %v", err)
			}
			got := checkSource(fset, []*ast.File{f})
			if len(got) != len(tc.want) {
				t.Fatalf("got %d violations, want %d (%q):\n%s", len(got), len(tc.want), tc.want, joinViolations(got))
			}
			for i, fragment := range tc.want {
				if !strings.Contains(got[i].rule, fragment) {
					t.Errorf("violation %d is %q, want it to mention %q", i, got[i], fragment)
				}
			}
		})
	}
}

func joinViolations(vs []violation) string {
	var b strings.Builder
	for _, v := range vs {
		fmt.Fprintf(&b, "\t%s\n", v)
	}
	return b.String()
}

// TestSelfForbiddenImport checks the import rule on each tree's allowed and
// refused imports.
func TestSelfForbiddenImport(t *testing.T) {
	trees := map[string]deterministicTree{}
	for _, tree := range deterministicTrees {
		trees[shortName(tree.root)] = tree
	}
	tests := []struct {
		tree    string
		imp     string
		allowed bool
	}{
		{"internal/state", "fmt", true},
		{"internal/state", "time", true},
		{"internal/state", "math/rand", true},
		{"internal/state", "google.golang.org/protobuf/proto", true},
		{"internal/state", apiV1, true},
		{"internal/state", stateTree + "/index", true},
		{"internal/state", "net", false},
		{"internal/state", "net/http", false},
		{"internal/state", "os", false},
		{"internal/state", "os/exec", false},
		{"internal/state", "syscall", false},
		{"internal/state", "crypto/rand", false},
		{"internal/state", "google.golang.org/grpc", false},
		{"internal/state", "google.golang.org/grpc/codes", false},
		{"internal/state", "github.com/cockroachdb/pebble/v2", false},
		{"internal/state", "github.com/cockroachdb/pebble/v2/vfs", false},
		{"internal/state", apiV1 + "/grpc", false},
		{"internal/state", coreTree, false},
		{"internal/state", schedTree, false},
		{"internal/state", modulePath + "/internal/store", false},
		{"internal/sched", stateTree, true},
		{"internal/sched", coreTree, false},
		{"internal/core", stateTree, true},
		{"internal/core", schedTree, true},
		{"internal/core", "go.etcd.io/raft/v3", true},
		{"internal/core", "go.etcd.io/raft/v3/raftpb", true},
		{"internal/core", modulePath + "/internal/runtime", false},
		{"internal/core", modulePath + "/internal/transport", false},
		{"internal/core", modulePath + "/sim", false},
		{"internal/core", modulePath + "/client", false},
		{"internal/core", "network", true}, // not net/...
	}
	for _, tc := range tests {
		t.Run(tc.tree+" imports "+tc.imp, func(t *testing.T) {
			tree, ok := trees[tc.tree]
			if !ok {
				t.Fatalf("no deterministic tree %s", tc.tree)
			}
			why := forbiddenImport(tree, tc.imp)
			if got := why == ""; got != tc.allowed {
				t.Errorf("allowed = %v (%q), want %v", got, why, tc.allowed)
			}
		})
	}
}
