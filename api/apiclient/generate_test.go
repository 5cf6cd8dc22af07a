package apiclient

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/flashsale/flashsale/internal/testenv"
)

// generator is the oapi-codegen go:generate runs (doc.go).
const generator = "github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@v2.8.2"

// TestGeneratedClientIsCurrent: apiclient.gen.go is what oapi-codegen makes
// of the description as it is now.
func TestGeneratedClientIsCurrent(t *testing.T) {
	testenv.Unit(t, "go run fetches oapi-codegen's modules through the Go module proxy")
	dir := t.TempDir()
	out := filepath.Join(dir, "apiclient.gen.go")
	cfg, err := os.ReadFile("oapi-codegen.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The same settings, written elsewhere (the settings' output wins over -o).
	cfg = bytes.Replace(cfg, []byte("\noutput: apiclient.gen.go\n"), []byte("\noutput: "+out+"\n"), 1)
	if !bytes.Contains(cfg, []byte(out)) {
		t.Fatalf("oapi-codegen.yaml has no line output: apiclient.gen.go:\n%s", cfg)
	}
	if err := os.WriteFile(filepath.Join(dir, "oapi-codegen.yaml"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "run", generator, "-config", filepath.Join(dir, "oapi-codegen.yaml"), "../openapi.yaml")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run %s: %v\n%s", generator, err, b)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("apiclient.gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("apiclient.gen.go is not what oapi-codegen makes of api/openapi.yaml: run go generate ./api/apiclient")
	}
}
