package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flashsale/flashsale"
)

// MinSecretLen is the shortest secret the binary calls strong, in bytes: a
// shorter HS256 secret, admin token or payment secret is accepted (the
// contract sets no minimum) and warned about at start.
const MinSecretLen = 16

// minRSABits is the smallest RSA modulus accepted for RS256.
const minRSABits = 2048

// MaxTokenBytes is the longest token Verify reads: a longer one is refused
// before it is decoded, so a forged token costs its sender more than it costs
// the service (the JSON of a 24 KiB one took about 1 ms to decode, before its
// signature could be checked). Real tokens are a few hundred bytes.
const MaxTokenBytes = 4 << 10

// Why a token is refused, beyond the library's own reasons (see reason).
var (
	errTokenTooLong  = errors.New("identity: token too long")
	errCrit          = errors.New("identity: crit header")
	errDateNotNumber = errors.New("identity: date claim not a number")
	errNoIssuedAt    = errors.New("identity: no iat with a maximum lifetime")
	errLifetime      = errors.New("identity: lifetime over the maximum")
)

// JWTConfig configures a JWT Identifier. At least one secret or public key is
// required.
type JWTConfig struct {
	// Secrets verify HS256 tokens; any one may match (several while one is
	// rotated). Any length is accepted; see MinSecretLen.
	Secrets []string
	// PublicKeys verify RS256 (*rsa.PublicKey, at least 2048 bits), ES256
	// (*ecdsa.PublicKey on P-256) and EdDSA (ed25519.PublicKey) tokens; any key
	// of the token's type may match. See ParsePublicKeys.
	PublicKeys []crypto.PublicKey
	// Issuer and Audience, when not empty, must be the token's iss and one of
	// its aud.
	Issuer, Audience string
	// MaxTTL, when not 0, is the longest lifetime accepted: iat is then
	// required, and a token whose exp is more than MaxTTL after its iat is
	// refused (an issuer's mistake or a stolen signing key's "never expires"
	// token). 0: no maximum.
	MaxTTL time.Duration
	// Leeway is the clock skew allowed on exp, nbf and iat. Default 30 s.
	Leeway time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// JWT is the Identifier of "jwt" mode. A token is accepted only if:
//   - it is at most MaxTokenBytes long (checked before anything is decoded);
//   - its header has no crit: it names extensions the token requires its
//     verifier to understand (RFC 7515 section 4.1.11), and this one
//     understands none;
//   - its alg is HS256, RS256, ES256 or EdDSA and a key of that kind is
//     configured: the alg selects which keys are tried, so a token cannot
//     choose how its own signature is checked (an HS256 token "signed" with an
//     RSA public key is checked against the HS256 secrets only; "none" never
//     verifies);
//   - its signature verifies with one of those keys;
//   - exp is present and not past, nbf and iat are not in the future (each
//     with Leeway); exp, nbf and iat are JSON numbers (the library also reads
//     a number in a string, which RFC 7519's NumericDate is not);
//   - with MaxTTL, iat is present and exp is at most MaxTTL after it;
//   - iss and aud match when configured;
//   - sub is a valid user id (flashsale.ValidID).
//
// It is safe for concurrent use.
type JWT struct {
	cfg    JWTConfig
	keys   map[string][]jwt.VerificationKey // alg -> keys of that kind
	parser *jwt.Parser
}

// NewJWT returns a JWT Identifier, or an error naming what is wrong with cfg.
func NewJWT(cfg JWTConfig) (*JWT, error) {
	if cfg.MaxTTL < 0 {
		return nil, fmt.Errorf("identity: negative maximum lifetime %s", cfg.MaxTTL)
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	keys := map[string][]jwt.VerificationKey{}
	for _, s := range cfg.Secrets {
		keys[jwt.SigningMethodHS256.Alg()] = append(keys[jwt.SigningMethodHS256.Alg()], []byte(s))
	}
	for i, k := range cfg.PublicKeys {
		alg, err := algOf(k)
		if err != nil {
			return nil, fmt.Errorf("identity: public key %d: %w", i+1, err)
		}
		keys[alg] = append(keys[alg], k)
	}
	if len(keys) == 0 {
		return nil, errors.New("identity: jwt mode needs at least one HS256 secret or public key")
	}
	methods := make([]string, 0, len(keys))
	for alg := range keys {
		methods = append(methods, alg)
	}
	opts := []jwt.ParserOption{jwt.WithValidMethods(methods), jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway), jwt.WithTimeFunc(cfg.Now)}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	return &JWT{cfg: cfg, keys: keys, parser: jwt.NewParser(opts...)}, nil
}

// algOf is the one JWS alg a public key verifies.
func algOf(k crypto.PublicKey) (string, error) {
	switch k := k.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return "", fmt.Errorf("RSA key of %d bits, want at least %d", k.N.BitLen(), minRSABits)
		}
		return jwt.SigningMethodRS256.Alg(), nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("ECDSA key on %s, want P-256 (ES256)", k.Curve.Params().Name)
		}
		return jwt.SigningMethodES256.Alg(), nil
	case ed25519.PublicKey:
		return jwt.SigningMethodEdDSA.Alg(), nil
	}
	return "", fmt.Errorf("unsupported key type %T (want RSA, ECDSA P-256 or Ed25519)", k)
}

// keyFor returns the keys of the token's alg: the alg picks the kind of key,
// never the key material. A token with a crit header gets none.
func (j *JWT) keyFor(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, errCrit
	}
	keys := j.keys[t.Method.Alg()]
	if len(keys) == 0 {
		return nil, fmt.Errorf("no key for alg %q", t.Method.Alg())
	}
	return jwt.VerificationKeySet{Keys: keys}, nil
}

// Identify verifies the bearer token (the scheme in any case) and returns its
// sub. X-User-ID is ignored.
func (j *JWT) Identify(r *http.Request) (string, error) {
	h, err := Single(r, "Authorization")
	if err != nil {
		return "", err
	}
	if len(h) < 7 || !strings.EqualFold(h[:7], "Bearer ") || strings.TrimSpace(h[7:]) == "" {
		return "", flashsale.Errorf(flashsale.CodeUnauthorized, "an Authorization: Bearer <JWT> header is required")
	}
	return j.Verify(strings.TrimSpace(h[7:]))
}

// Verify checks one token (see JWT) and returns its sub.
func (j *JWT) Verify(raw string) (string, error) {
	if len(raw) > MaxTokenBytes {
		return "", flashsale.Errorf(flashsale.CodeUnauthorized, "invalid token: %s", reason(errTokenTooLong))
	}
	claims := strictClaims{maxTTL: j.cfg.MaxTTL}
	if _, err := j.parser.ParseWithClaims(raw, &claims, j.keyFor); err != nil {
		return "", flashsale.Errorf(flashsale.CodeUnauthorized, "invalid token: %s", reason(err))
	}
	if !flashsale.ValidID(claims.Subject) {
		return "", flashsale.Errorf(flashsale.CodeUnauthorized, "invalid token: sub must be 1 to 64 characters of [A-Za-z0-9_-]")
	}
	return claims.Subject, nil
}

// reason names why a token failed, without echoing its content.
func reason(err error) string {
	for _, r := range []struct {
		err error
		msg string
	}{
		{errTokenTooLong, fmt.Sprintf("longer than %d bytes", MaxTokenBytes)},
		{errCrit, "a crit header is not accepted"},
		{errDateNotNumber, "exp, nbf and iat must be numbers"},
		{errNoIssuedAt, "iat is required"},
		{errLifetime, "lifetime (exp - iat) over the maximum"},
		{jwt.ErrTokenMalformed, "malformed"},
		{jwt.ErrTokenSignatureInvalid, "signature does not verify"},
		{jwt.ErrTokenUnverifiable, "signature does not verify"},
		{jwt.ErrTokenRequiredClaimMissing, "a required claim is missing"},
		{jwt.ErrTokenExpired, "expired"},
		{jwt.ErrTokenNotValidYet, "not valid yet"},
		{jwt.ErrTokenUsedBeforeIssued, "issued in the future"},
		{jwt.ErrTokenInvalidIssuer, "wrong issuer"},
		{jwt.ErrTokenInvalidAudience, "wrong audience"},
	} {
		if errors.Is(err, r.err) {
			return r.msg
		}
	}
	return "not accepted"
}

// strictClaims are the registered claims, read strictly: exp, nbf and iat
// must be JSON numbers (they shadow RegisteredClaims' fields of the same
// names, which are left empty), and with maxTTL, iat is required and exp may
// be at most maxTTL after it (Validate, which the library calls after its own
// checks).
type strictClaims struct {
	jwt.RegisteredClaims
	ExpiresAt *numericDate `json:"exp,omitempty"`
	NotBefore *numericDate `json:"nbf,omitempty"`
	IssuedAt  *numericDate `json:"iat,omitempty"`
	maxTTL    time.Duration
}

func (c *strictClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt.date(), nil }
func (c *strictClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore.date(), nil }
func (c *strictClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt.date(), nil }

// Validate checks the maximum lifetime.
func (c *strictClaims) Validate() error {
	switch {
	case c.maxTTL == 0:
		return nil
	case c.IssuedAt == nil:
		return errNoIssuedAt
	case c.ExpiresAt != nil && c.ExpiresAt.Sub(c.IssuedAt.Time) > c.maxTTL:
		return errLifetime
	}
	return nil
}

// numericDate is a jwt.NumericDate that must be a JSON number: the library's
// also takes a number in a string ("exp": "9999999999").
type numericDate struct{ jwt.NumericDate }

func (d *numericDate) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return errDateNotNumber
	}
	return d.NumericDate.UnmarshalJSON(b)
}

// date is d's jwt.NumericDate, nil when d is.
func (d *numericDate) date() *jwt.NumericDate {
	if d == nil {
		return nil
	}
	return &d.NumericDate
}

// ParsePublicKeys reads every public key of a PEM file: blocks of type
// "PUBLIC KEY" (PKIX: RSA, ECDSA or Ed25519), "RSA PUBLIC KEY" (PKCS #1) or
// "CERTIFICATE" (its subject key). Other blocks are an error, and so is a file
// without a key.
func ParsePublicKeys(data []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var k crypto.PublicKey
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				k = cert.PublicKey
			}
		default:
			err = fmt.Errorf("PEM block of type %q is not a public key", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("identity: PEM block %d: %w", n, err)
		}
		if _, err := algOf(k); err != nil {
			return nil, fmt.Errorf("identity: PEM block %d: %w", n, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("identity: no PEM public key found")
	}
	return keys, nil
}
