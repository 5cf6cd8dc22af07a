// Package apicheck checks HTTP exchanges, a request and the answer to it,
// against the API's description (package api, OpenAPI 3.1). The e2e suite
// checks every exchange of its client with it, and `flashsale bench` the
// exchanges of its verification, so an answer that drifts from the
// description fails a test or a check.
//
// kin-openapi's openapi3filter finds the operation, validates the request
// (parameters, identity, body) and the answer's status and headers. An
// answer's JSON body is validated by the JSON Schema 2020-12 validator that
// kin-openapi itself uses for OpenAPI 3.1 (santhosh-tekuri/jsonschema), but
// compiled once per declared schema: kin-openapi compiles the schema again
// for every value it validates, about 1 ms per ticket on this machine, which
// the e2e suite's crowds and the bench cannot afford; compiled once, the same
// check costs tens of microseconds.
//
// What it checks (Check): the answer's status is declared for its operation
// (under that status, not only under default), with its headers and body; a
// request the description has no operation for is answered 404 not_found, as
// the service answers an unknown route; and a request that does not match its
// operation (a bad body, a bad id, no identity) is answered a 4xx, or 503 (a
// dependency away, or the endpoint switched off, is found first): bad input is
// never accepted, nor answered 500. What it does not: it reads whole
// bodies, so a stream (text/event-stream) is not for it; it never asks the
// service anything.
package apicheck

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/flashsale/flashsale/api"
)

// Checker checks exchanges against the description. Safe for concurrent use.
type Checker struct {
	doc *openapi3.T
	// requests is doc read as OpenAPI 3.0 (see Check).
	requests *openapi3.T
	router   routers.Router
	opts     *openapi3filter.Options
	// bodies compiles the description's schemas, each once (see body).
	bodies   *jsonschema.Compiler
	bodiesMu sync.Mutex
	compiled sync.Map // JSON pointer of a schema in the description -> *jsonschema.Schema

	// passed remembers exchanges that matched (see Check), at most
	// passedMax at a time.
	passedMu sync.Mutex
	passed   map[[sha256.Size]byte]struct{}
}

// passedMax bounds the exchanges Check remembers as matching.
const passedMax = 1 << 16

// docURL is the description's address for the JSON Schema compiler.
const docURL = "file:///openapi.json"

// ErrDrift is what every Check error wraps: the exchange does not match the
// description.
var ErrDrift = errors.New("the exchange does not match the API description")

// Drift is one exchange that does not match the description.
type Drift struct {
	Method, Path string
	Status       int
	Body         string // the answer's body, cut at 300 bytes
	Reason       string
}

func (d *Drift) Error() string {
	return fmt.Sprintf("%s %s answered %d %s: %s", d.Method, d.Path, d.Status, d.Body, d.Reason)
}

// Unwrap makes errors.Is(err, ErrDrift) true.
func (d *Drift) Unwrap() error { return ErrDrift }

var registerDecoders sync.Once

// New loads and validates the embedded description.
func New() (*Checker, error) {
	return Load(api.YAML())
}

// Load is New for another description (a test's).
func Load(description []byte) (*Checker, error) {
	registerDecoders.Do(func() {
		// Bodies kin-openapi has no decoder for are read as text: their
		// schemas are strings, so only the content type is checked.
		for _, ct := range []string{"text/html", "text/css", "text/javascript", "text/event-stream",
			"application/openmetrics-text", "application/octet-stream"} {
			openapi3filter.RegisterBodyDecoder(ct, textDecoder)
		}
	})
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(description)
	if err != nil {
		return nil, fmt.Errorf("apicheck: load the description: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("apicheck: the description is not valid OpenAPI: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("apicheck: route the description: %w", err)
	}
	// Answers' bodies are checked by body; their content type too.
	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, AuthenticationFunc: authenticate,
		ExcludeResponseBody: true}
	// The field and the reason, not the whole schema and value.
	opts.WithCustomSchemaErrorFunc(func(e *openapi3.SchemaError) string {
		return "at /" + strings.Join(e.JSONPointer(), "/") + ": " + e.Reason
	})
	j, err := doc.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("apicheck: the description as JSON: %w", err)
	}
	whole, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		return nil, fmt.Errorf("apicheck: the description as JSON: %w", err)
	}
	comp := jsonschema.NewCompiler()
	comp.DefaultDraft(jsonschema.Draft2020) // OpenAPI 3.1's schemas are JSON Schema 2020-12
	comp.AssertFormat()                     // date-time is checked, as kin-openapi does
	if err := comp.AddResource(docURL, whole); err != nil {
		return nil, fmt.Errorf("apicheck: the description as a JSON Schema resource: %w", err)
	}
	requests := *doc
	requests.OpenAPI = "3.0.4"
	return &Checker{doc: doc, requests: &requests, router: router, opts: opts, bodies: comp}, nil
}

// Doc is the loaded description (read it, do not change it).
func (c *Checker) Doc() *openapi3.T { return c.doc }

func textDecoder(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	b, err := io.ReadAll(body)
	return string(b), err
}

// authenticate checks that a request carries what a security scheme names
// (a header, a cookie, "Bearer "), not that it is valid: whether it is, the
// answer's status says, and is checked against the declaration.
func authenticate(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	s, r := in.SecurityScheme, in.RequestValidationInput.Request
	switch {
	case s.Type == "http" && strings.EqualFold(s.Scheme, "bearer"):
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			return errors.New("no Authorization: Bearer")
		}
	case s.Type == "apiKey" && s.In == "header":
		if r.Header.Get(s.Name) == "" {
			return fmt.Errorf("no %s header", s.Name)
		}
	case s.Type == "apiKey" && s.In == "cookie":
		if _, err := r.Cookie(s.Name); err != nil {
			return fmt.Errorf("no %s cookie", s.Name)
		}
	default:
		return fmt.Errorf("security scheme %s of type %s is not checked here", in.SecuritySchemeName, s.Type)
	}
	return nil
}

// Check reports how an exchange differs from the description: nil when it
// matches, else a *Drift (wrapping ErrDrift). req is the request as sent
// (its body is not read: reqBody is), status, header and body the answer.
//
// An exchange identical to one that matched before (the same request, the
// same answer but for its Date) is not checked again: the result would be the
// same. A client that repeats itself (a flooder, a poll of a ticket that is
// still queued) then costs a hash per exchange.
func (c *Checker) Check(ctx context.Context, req *http.Request, reqBody []byte, status int, header http.Header, body []byte) error {
	key := exchangeKey(req, reqBody, status, header, body)
	c.passedMu.Lock()
	_, seen := c.passed[key]
	c.passedMu.Unlock()
	if seen {
		return nil
	}
	if err := c.check(ctx, req, reqBody, status, header, body); err != nil {
		return err
	}
	c.passedMu.Lock()
	if c.passed == nil || len(c.passed) >= passedMax {
		c.passed = map[[sha256.Size]byte]struct{}{}
	}
	c.passed[key] = struct{}{}
	c.passedMu.Unlock()
	return nil
}

// exchangeKey identifies an exchange: everything of it that Check reads.
// The answer's Date is left out (it changes every second and nothing
// declares it).
func exchangeKey(req *http.Request, reqBody []byte, status int, header http.Header, body []byte) [sha256.Size]byte {
	h := sha256.New()
	field := func(b []byte) { // length-prefixed: no two exchanges write the same bytes
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	headers := func(hd http.Header, skip string) {
		for _, k := range slices.Sorted(maps.Keys(hd)) {
			if k == skip {
				continue
			}
			field([]byte(k))
			for _, v := range hd[k] {
				field([]byte(v))
			}
		}
		field(nil)
	}
	field([]byte(req.Method))
	field([]byte(req.URL.String()))
	headers(req.Header, "")
	field(reqBody)
	field([]byte(strconv.Itoa(status)))
	headers(header, "Date")
	field(body)
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key
}

func (c *Checker) check(ctx context.Context, req *http.Request, reqBody []byte, status int, header http.Header, body []byte) error {
	drift := func(format string, args ...any) error {
		b := strings.TrimSpace(string(body))
		if len(b) > 300 {
			b = b[:300] + "..."
		}
		return &Drift{Method: req.Method, Path: req.URL.RequestURI(), Status: status, Body: b, Reason: fmt.Sprintf(format, args...)}
	}
	r := req.Clone(ctx)
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := c.router.FindRoute(r)
	if err != nil {
		// No operation: the service answers an unknown route (or method)
		// 404 not_found in the one error shape.
		if status != http.StatusNotFound || !isErrorShape(header, body, "not_found") {
			return drift("no operation in the description for this request (%v), yet not answered 404 not_found", err)
		}
		return nil
	}
	op := route.Operation
	if op.Responses.Status(status) == nil {
		return drift("status %d is not declared for operation %s", status, op.OperationID)
	}
	// The request is validated by kin-openapi's OpenAPI 3.0 validator, which
	// compiles nothing per value: the request side of the description uses no
	// keyword of 3.1 but type arrays with "null", which it reads as 3.1 does
	// (TestRequestsReadAs31). The answer is validated as 3.1.
	asRequest := *route
	asRequest.Spec = c.requests
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: &asRequest, Options: c.opts}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	in.Route = route
	// Bad input is refused (4xx), or meets a dependency away or an endpoint
	// switched off first (503): never accepted, never a 500.
	if reqErr != nil && (status < 400 || status >= 500) && status != http.StatusServiceUnavailable {
		return drift("operation %s: the request does not match the description (%v), yet it was answered %d, not a 4xx", op.OperationID, reqErr, status)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header, Options: c.opts}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		return drift("operation %s: the answer does not match its declaration: %v", op.OperationID, err)
	}
	if err := c.body(route, status, header, body); err != nil {
		return drift("operation %s: the answer's body does not match its declaration: %v", op.OperationID, err)
	}
	return nil
}

// body checks an answer's content type against those declared for its
// status, and a JSON body against its schema, compiled once.
func (c *Checker) body(route *routers.Route, status int, header http.Header, body []byte) error {
	code := strconv.Itoa(status)
	resp := route.Operation.Responses.Value(code)
	if len(resp.Value.Content) == 0 {
		if len(body) > 0 {
			return fmt.Errorf("a body where none is declared")
		}
		return nil
	}
	ct := header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return fmt.Errorf("content type %q: %w", ct, err)
	}
	if resp.Value.Content[mt] == nil {
		return fmt.Errorf("content type %q is not declared (%v)", mt, slices.Sorted(maps.Keys(resp.Value.Content)))
	}
	if mt != "application/json" {
		return nil // text: the schemas are strings
	}
	// Where the schema is in the description: under the response it names
	// ($ref) or under the operation.
	at := resp.Ref
	if at == "" {
		at = "#/paths/" + pointerEscape(route.Path) + "/" + strings.ToLower(route.Method) + "/responses/" + code
	}
	at += "/content/" + pointerEscape(mt) + "/schema"
	sch, err := c.schema(at)
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if err := sch.Validate(v); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return errors.New(strings.Join(leaves(ve), "; "))
		}
		return err
	}
	return nil
}

// schema compiles the schema at pointer at in the description, once.
func (c *Checker) schema(at string) (*jsonschema.Schema, error) {
	if s, ok := c.compiled.Load(at); ok {
		return s.(*jsonschema.Schema), nil
	}
	c.bodiesMu.Lock() // the compiler is not safe for concurrent use
	defer c.bodiesMu.Unlock()
	s, err := c.bodies.Compile(docURL + at)
	if err != nil {
		return nil, fmt.Errorf("apicheck: compile the schema at %s: %w", at, err)
	}
	c.compiled.Store(at, s)
	return s, nil
}

// pointerEscape escapes s as one token of a JSON pointer in a URL fragment.
func pointerEscape(s string) string {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
	return url.PathEscape(s)
}

// leaves lists the innermost causes of a validation error: where, and what.
func leaves(ve *jsonschema.ValidationError) []string {
	if len(ve.Causes) == 0 {
		return []string{"at /" + strings.Join(ve.InstanceLocation, "/") + ": " + ve.ErrorKind.LocalizedString(message.NewPrinter(language.English))}
	}
	var out []string
	for _, c := range ve.Causes {
		out = append(out, leaves(c)...)
	}
	return out
}

// isErrorShape reports whether body is the one error shape with code and a
// message, and nothing else.
func isErrorShape(header http.Header, body []byte, code string) bool {
	var e struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	return strings.HasPrefix(header.Get("Content-Type"), "application/json") && dec.Decode(&e) == nil &&
		e.Error != nil && e.Error.Code == code && e.Error.Message != ""
}
