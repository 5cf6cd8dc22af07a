package deploy

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/internal/testenv"
)

// goEnv returns `go env NAME` of the go tool that runs the tests.
func goEnv(t *testing.T, name string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	out, err := exec.Command(goTool, "env", name).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

// TestContainerImage builds deploy/Containerfile with podman and checks the
// image: it holds only the CA certificates and the flashsale binary (static,
// so it runs on an empty image), runs as an unprivileged user, and the binary
// answers `flashsale migrate -h`. Where podman is not installed the test skips,
// saying so, and fails under CI (deploy/services.sh chromium, which `make
// test` runs, installs it).
//
// The build needs no network: its Go stage is an image made here from scratch
// with the host's CA certificates, the host's Go toolchain and module cache
// mounted into the RUN steps (GOPROXY=off), and the steps run with chroot
// isolation, which needs neither cgroups nor an OCI runtime's rlimits (a
// sandboxed machine has neither). Where podman can run containers, the image
// runs `flashsale migrate -h` itself; where it cannot, the binary copied out
// of the image runs on the host, and the log says why.
func TestContainerImage(t *testing.T) {
	podman := testenv.Tool(t, "podman", "deploy/services.sh chromium")
	isolation := os.Getenv("FLASHSALE_PODMAN_ISOLATION")
	if isolation == "" {
		isolation = "chroot"
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	const caBundle = "/etc/ssl/certs/ca-certificates.crt"
	ca, err := os.ReadFile(caBundle)
	if err != nil {
		t.Fatalf("the host's CA certificates (the build image's): %v", err)
	}
	b := make([]byte, 5)
	rand.Read(b)
	id := hex.EncodeToString(b)
	image, builder := "localhost/flashsale-test:"+id, "localhost/flashsale-test-go:"+id
	run := func(what string, args ...string) []byte {
		t.Helper()
		t0 := time.Now()
		out, err := exec.Command(podman, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: podman %s: %v\n%s", what, strings.Join(args, " "), err, tail(out, 40))
		}
		t.Logf("%s: %s", what, time.Since(t0).Round(100*time.Millisecond))
		return out
	}
	t.Cleanup(func() {
		if out, err := exec.Command(podman, "rmi", "-f", image, builder).CombinedOutput(); err != nil {
			t.Logf("cleanup: podman rmi: %v\n%s", err, out)
		}
	})

	// The Go build image: CA certificates, /tmp and HOME; Go itself, the
	// module cache and the build cache are mounted at build time.
	ctx := t.TempDir()
	if err := os.MkdirAll(filepath.Join(ctx, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(ctx, "root"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "ca-certificates.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte(`FROM scratch
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY tmp /tmp
COPY root /root
ENV HOME=/root PATH=/usr/local/go/bin TMPDIR=/tmp
`), 0o644); err != nil {
		t.Fatal(err)
	}
	run("build image", "build", "--isolation", isolation, "--layers=false", "-t", builder, ctx)

	goroot, modcache, gocache := goEnv(t, "GOROOT"), goEnv(t, "GOMODCACHE"), goEnv(t, "GOCACHE")
	if err := os.MkdirAll(gocache, 0o755); err != nil {
		t.Fatal(err)
	}
	run("podman build -f deploy/Containerfile", "build", "--isolation", isolation, "--layers=false",
		"--build-arg", "GO_IMAGE="+builder, "--build-arg", "GOPROXY=off",
		"--volume", goroot+":/usr/local/go:ro", "--volume", modcache+":/go/pkg/mod:ro",
		"--volume", gocache+":/root/.cache/go-build",
		"-f", filepath.Join(root, "deploy", "Containerfile"), "-t", image, root)

	// The image's configuration.
	var inspect []struct {
		Config struct {
			User         string
			Entrypoint   []string
			Cmd          []string
			Env          []string
			ExposedPorts map[string]any
		}
	}
	if err := json.Unmarshal(run("inspect", "image", "inspect", image), &inspect); err != nil || len(inspect) != 1 {
		t.Fatalf("podman image inspect: %v", err)
	}
	cfg := inspect[0].Config
	if !slices.Equal(cfg.Entrypoint, []string{"/usr/local/bin/flashsale"}) {
		t.Errorf("entrypoint %q, want [/usr/local/bin/flashsale]", cfg.Entrypoint)
	}
	if cfg.User == "" || strings.HasPrefix(cfg.User, "0") || cfg.User == "root" {
		t.Errorf("user %q, want an unprivileged one", cfg.User)
	}
	if !slices.Contains(cfg.Env, "FLASHSALE_HTTP_ADDR=0.0.0.0:8080") {
		t.Errorf("env %q: the API must listen on every interface in a container", cfg.Env)
	}

	// Its files: nothing but the certificates and the binary.
	cid := strings.TrimSpace(string(run("create", "create", image)))
	defer exec.Command(podman, "rm", "-f", cid).Run()
	export, err := exec.Command(podman, "export", cid).Output()
	if err != nil {
		t.Fatalf("podman export: %v", err)
	}
	var files []string
	tr := tar.NewReader(bytes.NewReader(export))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the exported image: %v", err)
		}
		if h.Typeflag == tar.TypeReg {
			files = append(files, strings.TrimPrefix(h.Name, "/"))
		}
	}
	slices.Sort(files)
	if want := []string{"etc/ssl/certs/ca-certificates.crt", "usr/local/bin/flashsale"}; !slices.Equal(files, want) {
		t.Errorf("the image's files are %q, want only %q", files, want)
	}
	bin := filepath.Join(t.TempDir(), "flashsale")
	run("copy the binary out", "cp", cid+":/usr/local/bin/flashsale", bin)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("the image's flashsale is no ELF binary: %v", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("the image's flashsale is dynamically linked: it cannot run on an empty image")
		}
	}
	f.Close()

	// The binary answers: in a container where podman can run one, else on
	// the host.
	out, err := exec.Command(podman, "run", "--rm", "--network", "none", image, "migrate", "-h").CombinedOutput()
	where := "in a container"
	if err != nil {
		t.Logf("podman cannot run a container on this machine (%v: %s); running the binary copied out of the image on the host instead",
			err, strings.TrimSpace(string(tail(out, 3))))
		where = "copied out of the image"
		out, err = exec.Command(bin, "migrate", "-h").CombinedOutput()
	}
	if err != nil || !bytes.Contains(out, []byte("-amqp-url")) || !bytes.Contains(out, []byte("-redis-addrs")) {
		t.Errorf("flashsale migrate -h %s: %v\n%s", where, err, tail(out, 20))
	} else {
		t.Logf("flashsale migrate -h %s: exit 0, %d lines of flags", where, bytes.Count(out, []byte("\n")))
	}
}

// tail returns the last n lines of b.
func tail(b []byte, n int) []byte {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return bytes.Join(lines, []byte("\n"))
}
