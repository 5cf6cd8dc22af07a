// Package bench is the load generator behind `flashsale bench`.
//
// It drives a running flashsale deployment through its public HTTP API only (the
// address given with --url; besides, it reads the server's Prometheus counters at
// --metrics-url): it creates a sale, lets a crowd of simulated users reserve
// (optionally), purchase, poll their tickets, pay, cancel or let their orders
// expire, samples the sale's stock while that happens, and finally checks the
// contract's guarantees from the outside (no oversell, every accepted ticket
// final, no user over the per-user limit, stock conserved). From the growth of
// the server's counters it reports what the run cost the server (broker messages
// per order, Redis round trips per admission and per order). It prints an aligned
// summary and can write the whole report as JSON and as one self-contained HTML
// page with inline SVG charts.
//
// The files are split by concern:
//
//   - config.go: flags, environment defaults and up-front validation
//   - client.go: the calls of the contract's endpoints, through the client
//     generated from the API's description (api/apiclient), with what the bench
//     adds to each exchange (slots, recording, the check below) and the payment
//     signature
//   - apicheck.go: answers checked against the API's description (api/apicheck),
//     the report's "answers match the API description"
//   - user.go: one simulated user's journey
//   - progress.go: the progress bar on stderr
//   - run.go, verify.go: one run from sale creation to the final verification
//   - recorder.go, stats.go: latency histograms, throughput and summary maths
//   - invariants.go: the outside-in invariant checks
//   - metrics.go: the server's counters, read before the opening and after the
//     load, and the "Server cost" section made of them
//   - report.go, html.go: the text, JSON and HTML reports
//   - main.go: the Main entry point wired into cmd/flashsale
package bench
