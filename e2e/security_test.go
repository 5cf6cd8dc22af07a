package e2e

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// jwtKeys are the signing keys of a jwt-mode deployment: two HS256 secrets
// (rotation), an RSA, an ECDSA P-256 and an Ed25519 key whose public halves
// are in one PEM file.
type jwtKeys struct {
	oldSecret, newSecret string
	rsa                  *rsa.PrivateKey
	ec                   *ecdsa.PrivateKey
	ed                   ed25519.PrivateKey
	pemPath              string
	rsaPublicPEM         []byte
}

func newJWTKeys(t *testing.T) *jwtKeys {
	t.Helper()
	k := &jwtKeys{oldSecret: "jwt-old-" + randHex(12), newSecret: "jwt-new-" + randHex(12)}
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	var file []byte
	for i, pub := range []crypto.PublicKey{&k.rsa.PublicKey, &k.ec.PublicKey, k.ed.Public()} {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		block := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		if i == 0 {
			k.rsaPublicPEM = block
		}
		file = append(file, block...)
	}
	k.pemPath = filepath.Join(t.TempDir(), "jwt-public-keys.pem")
	if err := os.WriteFile(k.pemPath, file, 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// vars are the FLASHSALE_* settings of jwt mode with these keys.
func (k *jwtKeys) vars(issuer, audience string) map[string]string {
	return map[string]string{
		"FLASHSALE_USER_AUTH":        "jwt",
		"FLASHSALE_JWT_SECRETS":      k.newSecret + "," + k.oldSecret,
		"FLASHSALE_JWT_PUBLIC_KEYS":  k.pemPath,
		"FLASHSALE_JWT_ISSUER":       issuer,
		"FLASHSALE_JWT_AUDIENCE":     audience,
		"FLASHSALE_LIMIT_PER_WINDOW": "0",
	}
}

func signJWT(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

// overrideClaims sets claims by name, value pairs (a nil value deletes the
// claim) and returns m.
func overrideClaims(m jwt.MapClaims, kv ...any) jwt.MapClaims {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(m, kv[i].(string))
		} else {
			m[kv[i].(string)] = kv[i+1]
		}
	}
	return m
}

// noneJWT is an unsigned token (alg "none"), made by hand as an attacker would.
func noneJWT(claims jwt.MapClaims) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	c, _ := json.Marshal(claims)
	return enc.EncodeToString(h) + "." + enc.EncodeToString(c) + "."
}

// oldTicketID is a UUIDv7 minted an hour ago: the shape of a ticket id, but
// no ticket (and too old to be one still queued).
func oldTicketID() string {
	u := uuid.Must(uuid.NewV7())
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(time.Now().Add(-time.Hour).UnixMilli()))
	copy(u[0:6], ms[2:8])
	return u.String()
}

// TestJWTIdentitiesE2E: the real binary in jwt mode (HS256 secrets old+new, a
// PEM file of RS256, ES256 and EdDSA keys, iss and aud required). Each token
// of the table is sent on a user read: a verified one gets the read's answer
// (404: no such ticket), every other one 401 unauthorized, and X-User-ID alone
// is 401. Then a purchase through JWTs: the ticket is the sub's, X-User-ID
// does not change whose it is, and another sub does not see it.
func TestJWTIdentitiesE2E(t *testing.T) {
	e := newEnv(t)
	k := newJWTKeys(t)
	const iss, aud = "https://id.example", "flashsale"
	p := e.start("all", k.vars(iss, aud))
	c := p.client()
	now := time.Now()
	claims := func(kv ...any) jwt.MapClaims {
		return overrideClaims(jwt.MapClaims{"sub": "alice", "iss": iss, "aud": aud, "exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix()}, kv...)
	}
	hs := func(m jwt.MapClaims) string { return signJWT(t, jwt.SigningMethodHS256, []byte(k.newSecret), m) }
	otherRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	probe := pathTicket(oldTicketID())
	cases := []struct {
		name    string
		headers hdr
		status  int
	}{
		{"HS256, new secret", hdr{"Authorization": "Bearer " + hs(claims())}, 404},
		{"HS256, old secret (rotation)", hdr{"Authorization": "Bearer " + signJWT(t, jwt.SigningMethodHS256, []byte(k.oldSecret), claims())}, 404},
		{"RS256", hdr{"Authorization": "Bearer " + signJWT(t, jwt.SigningMethodRS256, k.rsa, claims())}, 404},
		{"ES256", hdr{"Authorization": "Bearer " + signJWT(t, jwt.SigningMethodES256, k.ec, claims())}, 404},
		{"EdDSA", hdr{"Authorization": "Bearer " + signJWT(t, jwt.SigningMethodEdDSA, k.ed, claims())}, 404},
		{"expired", hdr{"Authorization": "Bearer " + hs(claims("exp", now.Add(-time.Minute).Unix()))}, 401},
		{"no exp", hdr{"Authorization": "Bearer " + hs(claims("exp", nil))}, 401},
		{"not yet valid", hdr{"Authorization": "Bearer " + hs(claims("nbf", now.Add(time.Minute).Unix()))}, 401},
		{"wrong key (RS256, unknown key)", hdr{"Authorization": "Bearer " + signJWT(t, jwt.SigningMethodRS256, otherRSA, claims())}, 401},
		{"wrong secret", hdr{"Authorization": "Bearer " + signJWT(t, jwt.SigningMethodHS256, []byte("not-a-configured-secret"), claims())}, 401},
		{"alg swapped: HS256 signed with the RSA public key PEM", hdr{"Authorization": "Bearer " + signJWT(t, jwt.SigningMethodHS256, k.rsaPublicPEM, claims())}, 401},
		{"alg none", hdr{"Authorization": "Bearer " + noneJWT(claims())}, 401},
		{"bad sub", hdr{"Authorization": "Bearer " + hs(claims("sub", "bad user!"))}, 401},
		{"wrong iss", hdr{"Authorization": "Bearer " + hs(claims("iss", "https://evil.example"))}, 401},
		{"wrong aud", hdr{"Authorization": "Bearer " + hs(claims("aud", "other"))}, 401},
		{"malformed", hdr{"Authorization": "Bearer not.a.jwt"}, 401},
		{"X-User-ID alone", hdr{"X-User-ID": "alice"}, 401},
		{"nothing", nil, 401},
	}
	for _, tc := range cases {
		r := c.must(t, http.MethodGet, probe, tc.headers, nil)
		if tc.status == 401 {
			checkError(t, tc.name, r, 401, "unauthorized")
		} else {
			checkError(t, tc.name, r, 404, "not_found")
		}
		t.Logf("%-55s → %d", tc.name, r.Status)
	}

	// A purchase as alice through the JWT client helper.
	jc := c.withJWT(func(user string) string { return hs(claims("sub", user)) })
	saleID := jc.createSale(t, openSale(5, 1, 100))
	r := jc.must(t, http.MethodPost, pathPurchase(saleID), user("alice"), map[string]int{"quantity": 1})
	var a purchaseAnswer
	if r.Status != http.StatusAccepted || r.decode(&a) != nil || a.TicketID == "" {
		t.Fatalf("alice's purchase with a JWT: %s, want 202", r)
	}
	if v := jc.awaitFinal(t, []ticketRef{{User: "alice", TicketID: a.TicketID}}, 30*time.Second)[a.TicketID]; v.Status != "pending_payment" {
		t.Errorf("alice's ticket ended %+v, want pending_payment", v)
	}
	// X-User-ID claims bob, the token says alice: the token decides.
	r = c.must(t, http.MethodGet, pathTicket(a.TicketID), hdr{"X-User-ID": "bob", "Authorization": "Bearer " + hs(claims())}, nil)
	if r.Status != http.StatusOK {
		t.Errorf("alice's token with X-User-ID bob: %s, want 200 (X-User-ID is ignored)", r)
	}
	checkError(t, "bob's token on alice's ticket", jc.must(t, http.MethodGet, pathTicket(a.TicketID), user("bob"), nil), 404, "not_found")
	checkError(t, "X-User-ID alice alone on her ticket", c.must(t, http.MethodGet, pathTicket(a.TicketID), user("alice"), nil), 401, "unauthorized")
}

// TestStartChecksSecuritySettings: an unknown auth mode, jwt mode without keys
// and a bad strike window stop the binary at start with a message naming the
// setting; secrets shorter than 16 bytes (admin token, payment secret, JWT
// HS256 secret) are accepted (the contract sets no minimum) with a warning
// naming each.
func TestStartChecksSecuritySettings(t *testing.T) {
	e := newEnv(t)
	weak := e.start("ingress", map[string]string{"FLASHSALE_ADMIN_TOKEN": "short", "FLASHSALE_PAYMENT_SECRET": "long-enough-secret-1,short",
		"FLASHSALE_USER_AUTH": "jwt", "FLASHSALE_JWT_SECRETS": "tiny"})
	for _, name := range []string{"FLASHSALE_ADMIN_TOKEN", "FLASHSALE_PAYMENT_SECRET (secret 2", "FLASHSALE_JWT_SECRETS"} {
		if log := weak.LogTail(50); !strings.Contains(log, "shorter than 16 bytes") || !strings.Contains(log, name) {
			t.Errorf("weak secrets: no warning naming %s in the log:\n%s", name, log)
		}
	}
	for _, tc := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"FLASHSALE_USER_AUTH": "jwt"}, "FLASHSALE_JWT_SECRETS"},
		{map[string]string{"FLASHSALE_USER_AUTH": "basic"}, "FLASHSALE_USER_AUTH"},
		{map[string]string{"FLASHSALE_UNPAID_STRIKE_HOURS": "0"}, "FLASHSALE_UNPAID_STRIKE_HOURS"},
	} {
		vars := e.Vars()
		for k, v := range tc.vars {
			vars[k] = v
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, binPath, "ingress")
		cmd.Env = processEnv(vars)
		out, err := cmd.CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: exit %v, output %q; want a refusal naming %s", tc.vars, err, tail(string(out), 5), tc.want)
		}
	}
}
