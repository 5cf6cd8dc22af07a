package bench

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Arrival patterns for --arrival.
const (
	arrivalBurst = "burst"
	arrivalRamp  = "ramp"
	// arrivalWaitingRoom creates the sale with a waiting room: users enter
	// the line during --room-window before the opening (see waitroom.go).
	arrivalWaitingRoom = "waiting-room"
	// arrivalEarly is the crowd of arrivalWaitingRoom without the room: the
	// users arrive spread the same way over --room-window before the
	// opening (roomArrival) and press buy, again after each 409 not_started
	// (at most once a second, or at its Retry-After), until the sale opens.
	arrivalEarly = "early"
)

// Inventory back ends for --inventory.
const (
	inventoryRedis = "redis"
	inventoryMySQL = "mysql"
)

// Bounds that keep a run finite in memory and time.
const (
	maxUsers         = 100_000
	maxStock         = 10_000_000
	maxPerUserLimit  = 1_000
	maxConns         = 10_000
	maxDuration      = 24 * time.Hour
	maxStartDelay    = time.Minute
	maxReservationWn = time.Hour
	maxWaitlist      = 100_000_000 // the contract's bound on waiting_room.waitlist
)

// Config is the validated configuration of one `flashsale bench` invocation. It is
// built from the subcommand's flags (with environment defaults for the secrets) and
// validated before anything is sent.
type Config struct {
	// URL is the base URL of the deployment; the bench talks to no other address
	// but MetricsURL.
	URL string `json:"url"`
	// AdminToken is the bearer token used to create the sale.
	AdminToken string `json:"-"`
	// PaymentSecret is the HMAC secret used to sign payment callbacks.
	PaymentSecret string `json:"-"`
	// Users is how many distinct users take part.
	Users int `json:"users"`
	// Stock is the sale's stock in units.
	Stock int `json:"stock"`
	// PerUserLimit is the sale's per_user_limit.
	PerUserLimit int `json:"per_user_limit"`
	// Conns caps concurrent HTTP connections and in-flight user requests.
	Conns int `json:"conns"`
	// Arrival is "burst" (every user at the opening) or "ramp" (spread over Ramp).
	Arrival string `json:"arrival"`
	// Ramp is the time over which users arrive with the ramp pattern.
	Ramp time.Duration `json:"-"`
	// PayRatio is the share of created orders that get paid.
	PayRatio float64 `json:"pay_ratio"`
	// CancelRatio is the share of the unpaid orders that get cancelled; the rest expire.
	CancelRatio float64 `json:"cancel_ratio"`
	// PaymentWindow is the sale's payment_window_seconds.
	PaymentWindow int `json:"payment_window_seconds"`
	// Reservation makes the sale have a reservation phase that every user goes through.
	Reservation bool `json:"reservation"`
	// ReservationWindow is how long the reservation window stays open (0: automatic).
	ReservationWindow time.Duration `json:"-"`
	// Inventory is sent as the sale's "inventory" field ("redis" or "mysql").
	Inventory string `json:"inventory"`
	// Duration caps the whole run, final verification included.
	Duration time.Duration `json:"-"`
	// WaitExpiry makes the run wait until unpaid orders expired and check that their
	// stock came back.
	WaitExpiry bool `json:"wait_expiry"`
	// JSONPath, when set, receives the machine-readable report.
	JSONPath string `json:"-"`
	// HTMLPath, when set, receives the self-contained HTML report.
	HTMLPath string `json:"-"`
	// Waitlist is the sale's waiting_room.waitlist with --arrival
	// waiting-room (-1 on the command line: Stock/10).
	Waitlist int `json:"waitlist,omitempty"`
	// RoomWindow is how long the waiting room is open before the sale starts
	// (--arrival waiting-room; 0: 2 s + 1 s per 1000 users, at most 60 s);
	// users enter spread over it.
	RoomWindow time.Duration `json:"-"`
	// Compare runs the scenario against a redis sale and then a mysql sale.
	Compare bool `json:"compare"`
	// Quiet turns the progress bar (and informational logs) off.
	Quiet bool `json:"-"`
	// Seed seeds the jitter of the simulated users (0 on the command line: random).
	Seed uint64 `json:"seed"`
	// StartDelay is how long after creation the sale (or its reservation window) opens.
	StartDelay time.Duration `json:"-"`
	// BundleRatio is the share of users who buy a bundle (one unit of the sale and
	// one of a second sale, all or nothing, with POST /api/v1/purchases) instead of
	// one unit of the sale. With BundleRatio > 0 the run creates the second sale.
	BundleRatio float64 `json:"bundle_ratio"`
	// BundleStock is the second sale's stock (0: the same as Stock).
	BundleStock int `json:"bundle_stock,omitempty"`
	// Follow is how users follow their tickets: "poll" (GET /tickets/{id} at
	// the poll_after_ms each answer gives) or "stream" (its event stream);
	// see follow.go.
	Follow string `json:"follow"`
	// MetricsURL is where the server's Prometheus counters are read for the
	// "Server cost" section (plain GET, no auth), before the opening and after
	// the load. Default: URL + "/metrics"; "" (--metrics-url "" or off): not read.
	MetricsURL string `json:"metrics_url,omitempty"`
	// MySQLDSN is the MySQL server whose global status counters (statements
	// by kind, fsyncs, row-lock waits) the "Cost of an order" section reads,
	// at the same two moments. Default: $FLASHSALE_MYSQL_META_DSN; "" or off:
	// not read. Not in the JSON report (it may hold a password).
	MySQLDSN string `json:"-"`
	// Preload, when > 0, measures the pipeline alone (see preload.go): that
	// many users (it sets Users) purchase while no worker consumes, then
	// WorkersCmd is started (sh -c) to start the workers, and the users follow
	// their tickets only from then on.
	Preload    int    `json:"preload,omitempty"`
	WorkersCmd string `json:"workers_cmd,omitempty"`

	// Internal tunables, fixed by parseConfig; tests may shorten them.
	sampleEvery      time.Duration
	requestTimeout   time.Duration
	settleTimeout    time.Duration
	expiryGrace      time.Duration
	priceCents       int64
	secondPriceCents int64
}

// parseConfig parses the bench's flags. getenv supplies the environment defaults of
// the token and secret flags. Errors (including flag.ErrHelp) are returned; the flag
// package has already printed usage to errOut for parse errors.
func parseConfig(args []string, getenv func(string) string, errOut io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("flashsale bench", flag.ContinueOnError)
	fs.SetOutput(errOut)
	fs.Usage = func() {
		fmt.Fprintf(errOut, "Usage: flashsale bench [flags]\n\nDrives a running flashsale deployment over HTTP and checks its guarantees.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:8080", "base URL of the deployment (the only address the bench talks to)")
	fs.StringVar(&c.AdminToken, "admin-token", getenv("FLASHSALE_ADMIN_TOKEN"), "admin bearer token (default $FLASHSALE_ADMIN_TOKEN)")
	fs.StringVar(&c.PaymentSecret, "payment-secret", firstSecret(getenv("FLASHSALE_PAYMENT_SECRET")), "payment webhook HMAC secret (default: the first of $FLASHSALE_PAYMENT_SECRET)")
	fs.IntVar(&c.Users, "users", 10000, fmt.Sprintf("number of simulated users (1..%d)", maxUsers))
	fs.IntVar(&c.Stock, "stock", 1000, "stock of the sale in units")
	fs.IntVar(&c.PerUserLimit, "per-user-limit", 1, "per_user_limit of the sale")
	fs.IntVar(&c.Conns, "conns", 256, "max concurrent HTTP connections / in-flight user requests")
	fs.StringVar(&c.Arrival, "arrival", arrivalBurst, "arrival pattern: burst (all at once), ramp (spread over --ramp) waiting-room (the sale has a waiting room: users enter its line spread over --room-window before the opening, then follow their tickets; the draw is checked) or early (no room: users arrive as with waiting-room and press buy again, at most once a second, until the sale opens)")
	fs.IntVar(&c.Waitlist, "waitlist", -1, "with --arrival waiting-room: the sale's waiting_room.waitlist (-1: --stock/10)")
	fs.DurationVar(&c.RoomWindow, "room-window", 0, "with --arrival waiting-room: how long the line is open before the sale starts; with --arrival early: the window before the opening over which users arrive (0: 2s + 1s per 1000 users, at most 60s)")
	fs.DurationVar(&c.Ramp, "ramp", 0, "time over which users arrive with --arrival ramp")
	fs.Float64Var(&c.PayRatio, "pay-ratio", 0.3, "share of created orders that are paid (0..1)")
	fs.Float64Var(&c.CancelRatio, "cancel-ratio", 0, "share of unpaid orders that are cancelled (0..1); the rest are left to expire")
	fs.IntVar(&c.PaymentWindow, "payment-window", 30, "payment_window_seconds of the sale (1..86400)")
	fs.BoolVar(&c.Reservation, "reservation", false, "create the sale with a reservation phase: users reserve first, then the sale opens")
	fs.DurationVar(&c.ReservationWindow, "reservation-window", 0, "length of the reservation window with --reservation (0: 2s + 1s per 1000 users, at most 60s)")
	fs.StringVar(&c.Inventory, "inventory", inventoryRedis, "inventory back end of the sale: redis or mysql")
	fs.DurationVar(&c.Duration, "duration", 5*time.Minute, "cap on the whole run, verification included")
	fs.BoolVar(&c.WaitExpiry, "wait-expiry", false, "after purchases settle, wait until unpaid orders expired and check their stock came back")
	fs.StringVar(&c.JSONPath, "json", "", "write the whole report as JSON to this file")
	fs.StringVar(&c.HTMLPath, "html", "", "write a self-contained HTML report with charts to this file")
	fs.BoolVar(&c.Compare, "compare", false, "run the scenario against a redis sale, then a mysql sale, and compare them")
	fs.BoolVar(&c.Quiet, "quiet", false, "no progress bar and only warnings in the log")
	fs.Uint64Var(&c.Seed, "seed", 0, "seed for the users' random jitter (0: random)")
	fs.Float64Var(&c.BundleRatio, "bundle-ratio", 0, "share of users (0..1) who buy a bundle of one unit of the sale and one of a second sale (POST /api/v1/purchases, all or nothing) instead of one unit; > 0 creates the second sale")
	fs.IntVar(&c.BundleStock, "bundle-stock", 0, "stock of the second sale with --bundle-ratio (0: the same as --stock)")
	fs.DurationVar(&c.StartDelay, "start-delay", 2*time.Second, "how long after its creation the sale (or its reservation window) opens")
	fs.StringVar(&c.Follow, "follow", followPoll, "how users follow their tickets: poll (GET /tickets/{id} at the poll_after_ms each answer gives) or stream (the ticket's event stream)")
	fs.StringVar(&c.MetricsURL, "metrics-url", "", `the server's Prometheus metrics, read before the opening and after the load for the "Server cost" section (default: --url + /metrics; "" or off: not read)`)
	fs.StringVar(&c.MySQLDSN, "mysql-dsn", getenv("FLASHSALE_MYSQL_META_DSN"), `a DSN of the deployment's MySQL server, whose global status (statements by kind, fsyncs, row-lock waits) is read with the server's counters for the "Cost of an order" section (default $FLASHSALE_MYSQL_META_DSN; "" or off: not read)`)
	fs.IntVar(&c.Preload, "preload", 0, "measure the pipeline alone: this many users (sets --users) purchase while no worker consumes, then --workers-cmd starts the workers; reports orders/s by created_at and the time until the last ticket is final")
	fs.StringVar(&c.WorkersCmd, "workers-cmd", "", "with --preload: the shell command (sh -c) that starts the workers once every purchase was answered; it is stopped (SIGTERM to its process group) when the run ends")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.Preload > 0 {
		c.Users = c.Preload
	}
	if c.Waitlist == -1 && strings.EqualFold(strings.TrimSpace(c.Arrival), arrivalWaitingRoom) {
		c.Waitlist = c.Stock / 10
	}
	metricsSet := false
	fs.Visit(func(f *flag.Flag) { metricsSet = metricsSet || f.Name == "metrics-url" })
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	c.PaymentSecret = firstSecret(c.PaymentSecret)
	c.URL = strings.TrimRight(strings.TrimSpace(c.URL), "/")
	c.Inventory = strings.ToLower(strings.TrimSpace(c.Inventory))
	c.Arrival = strings.ToLower(strings.TrimSpace(c.Arrival))
	c.Follow = strings.ToLower(strings.TrimSpace(c.Follow))
	c.MetricsURL = strings.TrimSpace(c.MetricsURL)
	switch {
	case !metricsSet:
		c.MetricsURL = c.URL + "/metrics"
	case strings.EqualFold(c.MetricsURL, "off"):
		c.MetricsURL = ""
	}
	if c.MySQLDSN = strings.TrimSpace(c.MySQLDSN); strings.EqualFold(c.MySQLDSN, "off") {
		c.MySQLDSN = ""
	}
	c.setInternalDefaults()
	if err := c.validate(); err != nil {
		return c, err
	}
	if !c.waitingRoom() {
		c.Waitlist = 0
	}
	return c, nil
}

// setInternalDefaults fills the tunables that have no flag.
func (c *Config) setInternalDefaults() {
	c.sampleEvery = 250 * time.Millisecond
	c.requestTimeout = 15 * time.Second
	c.settleTimeout = 10 * time.Second
	c.expiryGrace = 60 * time.Second
	c.priceCents = 19900
	c.secondPriceCents = 4900
}

// firstSecret returns the first entry of a comma-separated secret list.
func firstSecret(s string) string {
	first, _, _ := strings.Cut(s, ",")
	return strings.TrimSpace(first)
}

// validate checks every field and returns all problems at once.
func (c *Config) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if u, err := url.Parse(c.URL); err != nil {
		bad("--url %q: %v", c.URL, err)
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("--url %q: want http(s)://host[:port]", c.URL)
	} else if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		bad("--url %q: no user info, query or fragment allowed", c.URL)
	}
	if c.MetricsURL != "" {
		if u, err := url.Parse(c.MetricsURL); err != nil {
			bad("--metrics-url %q: %v", c.MetricsURL, err)
		} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("--metrics-url %q: want http(s)://host[:port]/path, or off", c.MetricsURL)
		}
	}
	if c.MySQLDSN != "" {
		if _, err := mysql.ParseDSN(c.MySQLDSN); err != nil {
			bad("--mysql-dsn: %v", err)
		}
	}
	if c.AdminToken == "" {
		bad("--admin-token (or FLASHSALE_ADMIN_TOKEN) is required to create the sale")
	}
	if c.PayRatio > 0 && c.PaymentSecret == "" {
		bad("--payment-secret (or FLASHSALE_PAYMENT_SECRET) is required when --pay-ratio > 0")
	}
	if c.Users < 1 || c.Users > maxUsers {
		bad("--users %d: want 1..%d", c.Users, maxUsers)
	}
	if c.Stock < 1 || c.Stock > maxStock {
		bad("--stock %d: want 1..%d", c.Stock, maxStock)
	}
	if c.PerUserLimit < 1 || c.PerUserLimit > maxPerUserLimit {
		bad("--per-user-limit %d: want 1..%d", c.PerUserLimit, maxPerUserLimit)
	}
	if c.Conns < 1 || c.Conns > maxConns {
		bad("--conns %d: want 1..%d", c.Conns, maxConns)
	}
	switch c.Arrival {
	case arrivalBurst:
		if c.Ramp != 0 {
			bad("--ramp only applies with --arrival ramp")
		}
	case arrivalRamp:
		if c.Ramp <= 0 {
			bad("--arrival ramp needs --ramp > 0")
		}
	case arrivalWaitingRoom:
		if c.Ramp != 0 {
			bad("--ramp only applies with --arrival ramp")
		}
		if c.Reservation || c.BundleRatio > 0 {
			bad("--arrival waiting-room: not with --reservation or --bundle-ratio (a sale with a waiting room cannot be in a bundle)")
		}
		if c.Waitlist < 0 || c.Waitlist > maxWaitlist {
			bad("--waitlist %d: want 0..%d", c.Waitlist, maxWaitlist)
		}
		if c.RoomWindow < 0 || c.RoomWindow > maxReservationWn {
			bad("--room-window %v: want 0..%v", c.RoomWindow, maxReservationWn)
		}
	case arrivalEarly:
		if c.Ramp != 0 {
			bad("--ramp only applies with --arrival ramp")
		}
		if c.Reservation {
			bad("--arrival early: not with --reservation (its users arrive before the opening)")
		}
		if c.RoomWindow < 0 || c.RoomWindow > maxReservationWn {
			bad("--room-window %v: want 0..%v", c.RoomWindow, maxReservationWn)
		}
	default:
		bad("--arrival %q: want burst, ramp, waiting-room or early", c.Arrival)
	}
	if c.Arrival != arrivalWaitingRoom && c.Waitlist != -1 {
		bad("--waitlist only applies with --arrival waiting-room")
	}
	if c.Arrival != arrivalWaitingRoom && c.Arrival != arrivalEarly && c.RoomWindow != 0 {
		bad("--room-window only applies with --arrival waiting-room or early")
	}
	if !validRatio(c.PayRatio) {
		bad("--pay-ratio %v: want 0..1", c.PayRatio)
	}
	if !validRatio(c.CancelRatio) {
		bad("--cancel-ratio %v: want 0..1", c.CancelRatio)
	}
	if !validRatio(c.BundleRatio) {
		bad("--bundle-ratio %v: want 0..1", c.BundleRatio)
	}
	if c.BundleStock < 0 || c.BundleStock > maxStock {
		bad("--bundle-stock %d: want 0..%d", c.BundleStock, maxStock)
	} else if c.BundleStock > 0 && c.BundleRatio == 0 {
		bad("--bundle-stock only applies with --bundle-ratio > 0")
	}
	if c.PaymentWindow < 1 || c.PaymentWindow > 86400 {
		bad("--payment-window %d: want 1..86400 seconds", c.PaymentWindow)
	}
	if c.ReservationWindow < 0 || c.ReservationWindow > maxReservationWn {
		bad("--reservation-window %v: want 0..%v", c.ReservationWindow, maxReservationWn)
	} else if c.ReservationWindow > 0 && !c.Reservation {
		bad("--reservation-window only applies with --reservation")
	}
	switch {
	case c.Preload < 0 || c.Preload > maxUsers:
		bad("--preload %d: want 0..%d", c.Preload, maxUsers)
	case c.Preload > 0 && strings.TrimSpace(c.WorkersCmd) == "":
		bad("--preload needs --workers-cmd, the command that starts the workers")
	case c.Preload == 0 && c.WorkersCmd != "":
		bad("--workers-cmd only applies with --preload")
	case c.Preload > 0 && (c.Reservation || c.Arrival != arrivalBurst):
		bad("--preload queues a burst: not with --reservation or --arrival ramp")
	}
	if c.Follow != followPoll && c.Follow != followStream {
		bad("--follow %q: want poll or stream", c.Follow)
	}
	if c.Inventory != inventoryRedis && c.Inventory != inventoryMySQL {
		bad("--inventory %q: want redis or mysql", c.Inventory)
	}
	if c.StartDelay < 0 || c.StartDelay > maxStartDelay {
		bad("--start-delay %v: want 0..%v", c.StartDelay, maxStartDelay)
	}
	if c.Duration <= 0 || c.Duration > maxDuration {
		bad("--duration %v: want > 0 and <= %v", c.Duration, maxDuration)
	}
	if len(errs) == 0 {
		// Only meaningful once the individual values are sane.
		budget := c.loadBudget()
		need := c.StartDelay + c.reservationPhase() + c.Ramp + c.roomWindow()
		if c.waitingRoom() {
			need += roomEndMargin
		}
		if need >= budget {
			bad("--duration %v leaves %v for the load, but the sale only opens (and users only arrive) after %v", c.Duration, budget, need)
		} else if c.WaitExpiry {
			need += time.Duration(c.PaymentWindow)*time.Second + 5*time.Second
			if need >= budget {
				bad("--duration %v leaves %v for the load, too short for --wait-expiry with --payment-window %ds (needs more than %v)", c.Duration, budget, c.PaymentWindow, need)
			}
		}
	}
	return errors.Join(errs...)
}

// bundles reports whether the run has a second sale and bundle buyers.
func (c *Config) bundles() bool { return c.BundleRatio > 0 }

// secondStock is the second sale's stock.
func (c *Config) secondStock() int {
	if c.BundleStock > 0 {
		return c.BundleStock
	}
	return c.Stock
}

// bundleUser reports whether the n-th user (from 0) buys a bundle: exactly
// BundleRatio of the users, spread evenly over them.
func (c *Config) bundleUser(n int) bool { return takeShare(int64(n)+1, c.BundleRatio) }

func validRatio(r float64) bool { return !math.IsNaN(r) && r >= 0 && r <= 1 }

// reservationWindow is the length of the reservation window (0 without one).
func (c *Config) reservationWindow() time.Duration {
	if !c.Reservation {
		return 0
	}
	if c.ReservationWindow > 0 {
		return c.ReservationWindow
	}
	return defaultWindow(c.Users)
}

// defaultWindow is the default length of a reservation window or waiting
// room for a crowd of users: 2 s + 1 s per 1000 users, at most 60 s.
func defaultWindow(users int) time.Duration {
	return min(2*time.Second+time.Duration(users)*time.Second/1000, time.Minute)
}

// waitingRoom reports whether the run's sale has a waiting room.
func (c *Config) waitingRoom() bool { return c.Arrival == arrivalWaitingRoom }

// arrivesEarly reports whether the run's users arrive over a window before
// the opening (--arrival waiting-room or early).
func (c *Config) arrivesEarly() bool { return c.waitingRoom() || c.Arrival == arrivalEarly }

// roomWindow is how long the waiting room is open before the opening, or
// the window of --arrival early's arrivals (0 without either).
func (c *Config) roomWindow() time.Duration {
	if !c.arrivesEarly() {
		return 0
	}
	if c.RoomWindow > 0 {
		return c.RoomWindow
	}
	return defaultWindow(c.Users)
}

// reservationPhase is the time from the reservation window's opening to the sale's
// start: the window plus a gap as long as the start delay.
func (c *Config) reservationPhase() time.Duration {
	if !c.Reservation {
		return 0
	}
	return c.reservationWindow() + c.StartDelay
}

// verifyReserve is the part of Duration kept for the final verification.
func (c *Config) verifyReserve() time.Duration {
	return min(30*time.Second, c.Duration/4)
}

// loadBudget is the part of Duration available to the load (sale creation to the
// end of the expiry wait).
func (c *Config) loadBudget() time.Duration { return c.Duration - c.verifyReserve() }

// ConfigSummary is the configuration as recorded in a report.
type ConfigSummary struct {
	Config
	RampSeconds              float64 `json:"ramp_seconds"`
	DurationSeconds          float64 `json:"duration_seconds"`
	ReservationWindowSeconds float64 `json:"reservation_window_seconds,omitempty"`
	StartDelaySeconds        float64 `json:"start_delay_seconds"`
	RoomWindowSeconds        float64 `json:"room_window_seconds,omitempty"`
}

func (c Config) summary() ConfigSummary {
	return ConfigSummary{
		Config:                   c,
		RampSeconds:              c.Ramp.Seconds(),
		DurationSeconds:          c.Duration.Seconds(),
		ReservationWindowSeconds: c.reservationWindow().Seconds(),
		StartDelaySeconds:        c.StartDelay.Seconds(),
		RoomWindowSeconds:        c.roomWindow().Seconds(),
	}
}
