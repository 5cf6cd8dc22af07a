// Package e2e holds the black-box end-to-end tests of flashsale.
//
// The tests build cmd/flashsale once (TestMain), then drive the real binary
// against the real Redis, RabbitMQ and MariaDB found through the FLASHSALE_*
// variables (defaults of the contract: everything on loopback). Each test gets
// its own namespace, databases, admin token and payment secret, starts the
// roles it needs as separate processes, and cleans up after itself: its
// databases are dropped, its Redis keys and RabbitMQ queues and exchanges are
// deleted.
//
// A test that cannot reach a service skips, unless CI is set, in which case it
// fails. Set FLASHSALE_E2E_BIN to test a prebuilt binary instead of building one.
//
// Run: go test ./e2e/ -count=1 -v   (or -run TestName for one test)
//
// Only the _test.go files hold code; this file exists so that the directory is
// a regular package for the go tool.
package e2e
