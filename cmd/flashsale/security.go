package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/flashsale/flashsale/identity"
)

// security is the configuration of who may do what: how users are identified,
// each user's share of a sale's admission window, the unpaid-strikes rule, and
// the minimum length of every secret.
type security struct {
	// UserAuth is "header" (X-User-ID from a trusted gateway) or "jwt".
	UserAuth string
	// Identity is the identifier UserAuth selects, built and checked at start.
	Identity identity.Identifier
	// UserPurchasesPerSecond is each user's budget of purchase requests per sale
	// on one node (see ingress.Config.UserPurchasesPerSecond); 0 disables it.
	UserPurchasesPerSecond int
	// UnpaidStrikes and UnpaidStrikeWindow: a user with this many orders expired
	// unpaid within the window may not purchase (403 blocked); 0 disables.
	UnpaidStrikes      int
	UnpaidStrikeWindow time.Duration
	// Weak names the secrets shorter than identity.MinSecretLen: accepted (the
	// contract sets no minimum, and a gateway's or a provider's secret is not
	// always ours to choose), and warned about at start.
	Weak []string
	// Warnings are the other settings accepted but worth a warning at start
	// (jwt mode without FLASHSALE_JWT_AUDIENCE), each a whole sentence.
	Warnings []string
}

type securityInput struct {
	userAuth, jwtSecrets, jwtKeys, jwtIssuer, jwtAudience, jwtMaxTTL *string
	userRate, strikes, strikeHours                                   *string
}

func securityFlags(fs *flag.FlagSet) *securityInput {
	return &securityInput{
		userAuth:    fs.String("user-auth", env("FLASHSALE_USER_AUTH", "header"), `how users are identified: "header" (X-User-ID from a trusted gateway) or "jwt"`),
		jwtSecrets:  secretFlag(fs, "jwt-secrets", "FLASHSALE_JWT_SECRETS", "", "jwt mode: HS256 `secrets`, comma-separated while rotating", nil),
		jwtKeys:     fs.String("jwt-public-keys", env("FLASHSALE_JWT_PUBLIC_KEYS", ""), "jwt mode: path of a PEM file of public keys (RS256, ES256, EdDSA)"),
		jwtIssuer:   fs.String("jwt-issuer", env("FLASHSALE_JWT_ISSUER", ""), "jwt mode: required iss (none when empty)"),
		jwtAudience: fs.String("jwt-audience", env("FLASHSALE_JWT_AUDIENCE", ""), "jwt mode: required aud (none when empty)"),
		jwtMaxTTL:   fs.String("jwt-max-ttl", env("FLASHSALE_JWT_MAX_TTL", ""), "jwt mode: the longest token lifetime (exp - iat) accepted, e.g. 1h; iat is then required (no maximum when empty or 0)"),
		userRate:    fs.String("user-purchases-per-second", env("FLASHSALE_USER_PURCHASES_PER_SECOND", "5"), "purchase requests per user per sale per node and second that may reach the sale's window; 0 disables"),
		strikes:     fs.String("unpaid-strikes", env("FLASHSALE_UNPAID_STRIKES", "0"), "orders expired unpaid within the strike window that block a user's purchases; 0 disables"),
		strikeHours: fs.String("unpaid-strike-hours", env("FLASHSALE_UNPAID_STRIKE_HOURS", "24"), "the strike window in hours (fractions allowed)"),
	}
}

// load validates the security settings, given the rest of the configuration
// (whose secrets it checks too), and builds the identifier. A secret setting
// that holds the shipped placeholder (see isPlaceholder) is refused: the
// placeholder is public, so a payment secret left at it lets anyone sign a
// payment, an admin token left at it opens the admin endpoints, and a DSN or
// URL left at it is an unedited example. A secret that is merely short is
// accepted with a warning (Weak).
func (in *securityInput) load(c *config) (security, error) {
	var s security
	for _, set := range []struct {
		name   string
		values []string
	}{
		{"FLASHSALE_ADMIN_TOKEN", []string{c.AdminToken}},
		{"FLASHSALE_PAYMENT_SECRET", c.PaymentSecrets},
		{"FLASHSALE_JWT_SECRETS", splitList(*in.jwtSecrets)},
		{"FLASHSALE_MYSQL_META_DSN", []string{c.MetaDSN}},
		{"FLASHSALE_MYSQL_SHARD_DSNS", c.ShardDSNs},
		{"FLASHSALE_AMQP_URL", c.AMQPURLs},
	} {
		for i, v := range set.values {
			if isPlaceholder(v) {
				return s, fmt.Errorf("%s (item %d) still holds the shipped placeholder %s: set a value of your own "+
					"(a secret: at least 16 random bytes, e.g. openssl rand -hex 32)", set.name, i+1, placeholder)
			}
		}
	}
	weak := func(name string, secrets ...string) {
		for i, v := range secrets {
			if v != "" && len(v) < identity.MinSecretLen {
				s.Weak = append(s.Weak, fmt.Sprintf("%s (secret %d: %d bytes)", name, i+1, len(v)))
			}
		}
	}
	weak("FLASHSALE_ADMIN_TOKEN", c.AdminToken)
	weak("FLASHSALE_PAYMENT_SECRET", c.PaymentSecrets...)
	weak("FLASHSALE_JWT_SECRETS", splitList(*in.jwtSecrets)...)
	var err error
	if s.UserPurchasesPerSecond, err = strconv.Atoi(*in.userRate); err != nil || s.UserPurchasesPerSecond < 0 {
		return s, fmt.Errorf("FLASHSALE_USER_PURCHASES_PER_SECOND must be a whole number >= 0, got %q", *in.userRate)
	}
	if s.UnpaidStrikes, err = strconv.Atoi(*in.strikes); err != nil || s.UnpaidStrikes < 0 {
		return s, fmt.Errorf("FLASHSALE_UNPAID_STRIKES must be a whole number >= 0, got %q", *in.strikes)
	}
	hours, err := strconv.ParseFloat(*in.strikeHours, 64)
	if err != nil || !(hours > 0) || hours > 24*366 {
		return s, fmt.Errorf("FLASHSALE_UNPAID_STRIKE_HOURS must be a number of hours > 0 (fractions allowed, at most a year), got %q", *in.strikeHours)
	}
	s.UnpaidStrikeWindow = time.Duration(hours * float64(time.Hour))
	if s.UnpaidStrikeWindow < time.Second {
		return s, fmt.Errorf("FLASHSALE_UNPAID_STRIKE_HOURS must be at least one second, got %q", *in.strikeHours)
	}
	s.UserAuth = *in.userAuth
	switch s.UserAuth {
	case "header":
		s.Identity = identity.Header{}
	case "jwt":
		cfg := identity.JWTConfig{Secrets: splitList(*in.jwtSecrets), Issuer: *in.jwtIssuer, Audience: *in.jwtAudience}
		if v := *in.jwtMaxTTL; v != "" {
			if cfg.MaxTTL, err = time.ParseDuration(v); err != nil || cfg.MaxTTL < 0 {
				return s, fmt.Errorf("FLASHSALE_JWT_MAX_TTL must be a duration >= 0 such as 15m or 24h (0: no maximum), got %q", v)
			}
		}
		if cfg.Audience == "" {
			s.Warnings = append(s.Warnings, "FLASHSALE_USER_AUTH=jwt without FLASHSALE_JWT_AUDIENCE: a token the same issuer "+
				"signed for any other service is accepted here; set it to the audience your identity provider gives this service")
		}
		if path := *in.jwtKeys; path != "" {
			data, err := os.ReadFile(path)
			if err != nil {
				return s, fmt.Errorf("FLASHSALE_JWT_PUBLIC_KEYS: %w", err)
			}
			if cfg.PublicKeys, err = identity.ParsePublicKeys(data); err != nil {
				return s, fmt.Errorf("FLASHSALE_JWT_PUBLIC_KEYS %s: %w", path, err)
			}
		}
		if len(cfg.Secrets) == 0 && len(cfg.PublicKeys) == 0 {
			return s, fmt.Errorf("FLASHSALE_USER_AUTH=jwt needs FLASHSALE_JWT_SECRETS or FLASHSALE_JWT_PUBLIC_KEYS")
		}
		j, err := identity.NewJWT(cfg)
		if err != nil {
			return s, fmt.Errorf("FLASHSALE_USER_AUTH=jwt: %w", err)
		}
		s.Identity = j
	default:
		return s, fmt.Errorf(`FLASHSALE_USER_AUTH must be "header" or "jwt", got %q`, s.UserAuth)
	}
	return s, nil
}

// maxHeaderBytes bounds a request's header block on the public listener
// (net/http allows 4 KiB more, then answers 431).
const maxHeaderBytes = 32 << 10
