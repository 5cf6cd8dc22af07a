package e2e

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
)

// binPath is the flashsale binary every test runs; buildErr is why it could
// not be built (reported by each test that needs it, so that "go test -run X"
// says what went wrong instead of dying in TestMain).
var (
	binPath  string
	buildErr error
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if testing.Short() {
		// The unit tier (make unit) runs none of this package: every test
		// here starts the real binary, most against the real services.
		fmt.Println("e2e: not in the unit tier (-short); make test runs it")
		return 0
	}
	if p := os.Getenv("FLASHSALE_E2E_BIN"); p != "" {
		binPath = p
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "flashsale-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binPath = filepath.Join(dir, "flashsale")
	buildErr = buildBinary(binPath)
	return m.Run()
}

func buildBinary(out string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	cmd := exec.Command(goTool, "build", "-o", out, "./cmd/flashsale")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/flashsale: %v\n%s", err, b)
	}
	return nil
}

// moduleRoot walks up from the working directory (the package directory
// during go test) to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Service configuration, from the FLASHSALE_* variables with the contract's
// defaults.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func redisAddrs() []string {
	var out []string
	for _, a := range strings.Split(envOr("FLASHSALE_REDIS_ADDRS", "127.0.0.1:6379"), ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func amqpURL() string {
	return envOr("FLASHSALE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
}

// mysqlBase is the meta DSN of the environment, whose database name each test
// replaces with its own.
func mysqlBase() (*mysql.Config, error) {
	return mysql.ParseDSN(envOr("FLASHSALE_MYSQL_META_DSN", "root@tcp(127.0.0.1:3306)/flashsale_meta"))
}

func mysqlDSN(dbName string) string {
	cfg, err := mysqlBase()
	if err != nil {
		panic(err) // checked by requireServices first
	}
	cfg.DBName = dbName
	return cfg.FormatDSN()
}

func newRedis() redis.UniversalClient {
	return redis.NewUniversalClient(&redis.UniversalOptions{Addrs: redisAddrs()})
}

var (
	servicesOnce sync.Once
	servicesErr  error
)

// requireServices skips the test (fails it when CI is set) if Redis,
// RabbitMQ or MariaDB cannot be reached, and fails it if the binary could
// not be built.
func requireServices(t *testing.T) {
	t.Helper()
	servicesOnce.Do(func() { servicesErr = checkServices() })
	if servicesErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("services unavailable (CI is set, so this fails): %v", servicesErr)
		}
		t.Skipf("services unavailable: %v", servicesErr)
	}
	if buildErr != nil {
		t.Fatalf("cannot build the binary: %v", buildErr)
	}
}

func checkServices() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error

	rdb := newRedis()
	if err := rdb.Ping(ctx).Err(); err != nil {
		errs = append(errs, fmt.Errorf("redis %v: %w", redisAddrs(), err))
	}
	rdb.Close()

	conn, err := amqp.DialConfig(amqpURL(), amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)})
	if err != nil {
		errs = append(errs, fmt.Errorf("rabbitmq: %w", err))
	} else {
		conn.Close()
	}

	if _, err := mysqlBase(); err != nil {
		errs = append(errs, fmt.Errorf("FLASHSALE_MYSQL_META_DSN: %w", err))
	} else {
		db, err := sql.Open("mysql", mysqlDSN(""))
		if err == nil {
			err = db.PingContext(ctx)
			db.Close()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("mysql: %w", err))
		}
	}
	return errors.Join(errs...)
}
