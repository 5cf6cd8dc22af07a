package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/flashsale/flashsale"
)

// keyring holds the keys of the table tests, generated once per run.
type keyring struct {
	rsa, rsaOther *rsa.PrivateKey
	ec, ecOther   *ecdsa.PrivateKey
	ed            ed25519.PrivateKey
	pemFile       []byte // the public keys of rsa, ec and ed
}

func newKeyring(t *testing.T) *keyring {
	t.Helper()
	var k keyring
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if k.rsaOther, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if k.ecOther, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	for _, pub := range []crypto.PublicKey{&k.rsa.PublicKey, &k.ec.PublicKey, k.ed.Public()} {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		k.pemFile = append(k.pemFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	}
	return &k
}

// rsaPublicPEM is the PEM text of the RSA public key, what an attacker who
// swaps RS256 for HS256 signs with.
func (k *keyring) rsaPublicPEM(t *testing.T) []byte {
	der, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

// unsigned builds an alg=none token by hand (the library refuses to make one
// without its explicit opt-in constant; this is what an attacker sends).
func unsigned(claims jwt.MapClaims) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	c, _ := json.Marshal(claims)
	return enc.EncodeToString(h) + "." + enc.EncodeToString(c) + "."
}

// override sets claims by name, value pairs (a nil value deletes the claim)
// and returns c.
func override(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

const (
	oldSecret = "old-secret-0123456789abcdef"
	newSecret = "new-secret-0123456789abcdef"
)

// TestJWTTable: every kind of token the contract names, with its verdict.
func TestJWTTable(t *testing.T) {
	k := newKeyring(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	keys, err := ParsePublicKeys(k.pemFile)
	if err != nil {
		t.Fatal(err)
	}
	base := JWTConfig{Secrets: []string{newSecret, oldSecret}, PublicKeys: keys, Now: func() time.Time { return now }}
	withIssAud := base
	withIssAud.Issuer, withIssAud.Audience = "https://id.example", "flashsale"

	claims := func(kv ...any) jwt.MapClaims {
		return override(jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Minute).Unix(), "iat": now.Unix()}, kv...)
	}
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, []byte(newSecret), c) }

	cases := []struct {
		name  string
		cfg   JWTConfig
		token string
		user  string // "" : refused
	}{
		{"HS256 with the new secret", base, hs(claims()), "alice"},
		{"HS256 with the old secret (rotation)", base, sign(t, jwt.SigningMethodHS256, []byte(oldSecret), claims()), "alice"},
		{"HS256 with a retired secret", base, sign(t, jwt.SigningMethodHS256, []byte("retired-secret-0123456789"), claims()), ""},
		{"RS256", base, sign(t, jwt.SigningMethodRS256, k.rsa, claims()), "alice"},
		{"RS256 with another key", base, sign(t, jwt.SigningMethodRS256, k.rsaOther, claims()), ""},
		{"ES256", base, sign(t, jwt.SigningMethodES256, k.ec, claims()), "alice"},
		{"ES256 with another key", base, sign(t, jwt.SigningMethodES256, k.ecOther, claims()), ""},
		{"EdDSA", base, sign(t, jwt.SigningMethodEdDSA, k.ed, claims()), "alice"},
		{"alg swapped: HS256 signed with the RSA public key PEM", base, sign(t, jwt.SigningMethodHS256, k.rsaPublicPEM(t), claims()), ""},
		{"alg none", base, unsigned(claims()), ""},
		{"RS384 (not an accepted alg)", base, sign(t, jwt.SigningMethodRS384, k.rsa, claims()), ""},
		{"HS256 when only public keys are configured", JWTConfig{PublicKeys: keys, Now: base.Now}, hs(claims()), ""},
		{"expired", base, hs(claims("exp", now.Add(-time.Minute).Unix())), ""},
		{"expired 20 s ago (within leeway)", base, hs(claims("exp", now.Add(-20*time.Second).Unix())), "alice"},
		{"no exp", base, hs(claims("exp", nil)), ""},
		{"not yet valid (nbf in 1 min)", base, hs(claims("nbf", now.Add(time.Minute).Unix())), ""},
		{"nbf in 20 s (within leeway)", base, hs(claims("nbf", now.Add(20*time.Second).Unix())), "alice"},
		{"issued in the future (iat in 1 min)", base, hs(claims("iat", now.Add(time.Minute).Unix())), ""},
		{"sub missing", base, hs(claims("sub", nil)), ""},
		{"sub with a space", base, hs(claims("sub", "bad user")), ""},
		{"sub of 65 characters", base, hs(claims("sub", strings.Repeat("a", 65))), ""},
		{"iss and aud right", withIssAud, hs(claims("iss", "https://id.example", "aud", []string{"other", "flashsale"})), "alice"},
		{"wrong iss", withIssAud, hs(claims("iss", "https://evil.example", "aud", "flashsale")), ""},
		{"no iss when required", withIssAud, hs(claims("aud", "flashsale")), ""},
		{"wrong aud", withIssAud, hs(claims("iss", "https://id.example", "aud", "other")), ""},
		{"garbage", base, "not.a.jwt", ""},
		{"empty", base, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j, err := NewJWT(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			r, _ := http.NewRequest(http.MethodGet, "/", nil)
			if tc.token != "" {
				r.Header.Set("Authorization", "Bearer "+tc.token)
			}
			r.Header.Set("X-User-ID", "mallory") // ignored in jwt mode
			got, err := j.Identify(r)
			if tc.user != "" {
				if err != nil || got != tc.user {
					t.Fatalf("got %q, %v; want %q", got, err, tc.user)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted as %q, want 401 unauthorized", got)
			}
			var fe *flashsale.Error
			if !errors.As(err, &fe) || fe.Code != flashsale.CodeUnauthorized {
				t.Fatalf("error %v, want code unauthorized", err)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// TestJWTHeaderIgnored: in jwt mode X-User-ID alone is refused.
func TestJWTHeaderIgnored(t *testing.T) {
	j, err := NewJWT(JWTConfig{Secrets: []string{newSecret}})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-User-ID", "alice")
	if u, err := j.Identify(r); err == nil || flashsale.ErrorCode(err) != flashsale.CodeUnauthorized {
		t.Fatalf("X-User-ID alone: %q, %v; want unauthorized", u, err)
	}
	if u, err := (Header{}).Identify(r); err != nil || u != "alice" {
		t.Fatalf("header mode: %q, %v; want alice", u, err)
	}
}

// TestJWTConfigRefused: weak or unsupported keys and an empty
// configuration are refused at construction.
func TestJWTConfigRefused(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]JWTConfig{
		"nothing":         {},
		"1024-bit RSA":    {PublicKeys: []crypto.PublicKey{&weak.PublicKey}},
		"P-384 ECDSA key": {PublicKeys: []crypto.PublicKey{&p384.PublicKey}},
	} {
		if _, err := NewJWT(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParsePublicKeys([]byte("no pem here")); err == nil {
		t.Error("a file without keys was accepted")
	}
	if _, err := ParsePublicKeys(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})); err == nil {
		t.Error("a private key block was accepted")
	}
}

// TestJWTHardening (issue 28): a maximum lifetime (iat then required), no
// crit header, numeric dates only, and tokens longer than MaxTokenBytes
// refused before they are decoded, each for its own reason. Every refused
// token here verifies with a configured key and was accepted before.
func TestJWTHardening(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	base := JWTConfig{Secrets: []string{newSecret}, Now: func() time.Time { return now }}
	capped := base
	capped.MaxTTL = time.Hour
	claims := func(kv ...any) jwt.MapClaims {
		return override(jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Minute).Unix(), "iat": now.Unix()}, kv...)
	}
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, []byte(newSecret), c) }
	withCrit := func(c jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
		tok.Header["crit"] = []string{"exp"}
		s, err := tok.SignedString([]byte(newSecret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	padded := func(n int) string { // a signed token of about n bytes
		return hs(claims("pad", strings.Repeat("x", n*3/4)))
	}
	year9999 := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	cases := []struct {
		name   string
		cfg    JWTConfig
		token  string
		user   string // "": refused
		reason string // the refusal names it
	}{
		{"lifetime of 1 h with a 1 h maximum", capped, hs(claims("exp", now.Add(time.Hour).Unix())), "alice", ""},
		{"lifetime of 1 h 1 s with a 1 h maximum", capped, hs(claims("exp", now.Add(time.Hour+time.Second).Unix())), "", "lifetime"},
		{"exp in year 9999 with a 1 h maximum", capped, hs(claims("exp", year9999)), "", "lifetime"},
		{"exp in year 9999 without a maximum", base, hs(claims("exp", year9999)), "alice", ""},
		{"no iat with a maximum", capped, hs(claims("iat", nil)), "", "iat is required"},
		{"no iat without a maximum", base, hs(claims("iat", nil)), "alice", ""},
		{"crit header", base, withCrit(claims()), "", "crit"},
		{"exp as a string", base, hs(claims("exp", fmt.Sprint(now.Add(time.Minute).Unix()))), "", "must be numbers"},
		{"nbf as a string", base, hs(claims("nbf", fmt.Sprint(now.Unix()))), "", "must be numbers"},
		{"iat as a string", base, hs(claims("iat", fmt.Sprint(now.Unix()))), "", "must be numbers"},
		{"exp as a fraction", base, hs(claims("exp", float64(now.Add(time.Minute).UnixMilli())/1000)), "alice", ""},
		{"a 3 KiB token", base, padded(3 << 10), "alice", ""},
		{"a 5 KiB token", base, padded(5 << 10), "", "longer than 4096 bytes"},
		{"a 24 KiB token", base, padded(24 << 10), "", "longer than 4096 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j, err := NewJWT(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := j.Verify(tc.token)
			if tc.user != "" {
				if err != nil || got != tc.user {
					t.Fatalf("got %q, %v; want %q", got, err, tc.user)
				}
				return
			}
			if err == nil || flashsale.ErrorCode(err) != flashsale.CodeUnauthorized || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("got %q, %v; want unauthorized naming %q", got, err, tc.reason)
			}
			t.Logf("refused: %v", err)
		})
	}
	if _, err := NewJWT(JWTConfig{Secrets: []string{newSecret}, MaxTTL: -time.Second}); err == nil {
		t.Error("a negative maximum lifetime was accepted")
	}
}

// BenchmarkJWTRefuseLong: what a forged 24 KiB token costs (refused on its
// length) beside a valid small one.
func BenchmarkJWTRefuseLong(b *testing.B) {
	j, err := NewJWT(JWTConfig{Secrets: []string{newSecret}})
	if err != nil {
		b.Fatal(err)
	}
	c := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
	small, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(newSecret))
	c["pad"] = strings.Repeat("x", 24<<10)
	long, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte("forged-secret-0123456789"))
	for name, tok := range map[string]string{"small valid": small, "24 KiB forged": long} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				j.Verify(tok)
			}
		})
	}
}
