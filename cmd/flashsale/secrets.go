package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// secretValue is the flag.Value of a setting that holds a secret (a token, an
// HMAC secret, a DSN or URL with a password). Its String, which the flag
// package prints as the default in -h and after every flag error (and which
// is therefore what the environment's value would show), never shows the
// secret: redact's form of it (a DSN or URL with its password masked), else
// "(set)"; "" when empty.
type secretValue struct {
	v      string
	redact func(string) string
}

func (s *secretValue) String() string {
	switch {
	case s == nil || s.v == "":
		return ""
	case s.redact != nil:
		return s.redact(s.v)
	}
	return "(set)"
}

func (s *secretValue) Set(v string) error { s.v = v; return nil }

// secretFlag registers a secret setting: the flag name, whose default is the
// environment variable envName (else def), shown redacted (see secretValue).
func secretFlag(fs *flag.FlagSet, name, envName, def, usage string, redact func(string) string) *string {
	sv := &secretValue{v: env(envName, def), redact: redact}
	fs.Var(sv, name, usage)
	return &sv.v
}

// redactList applies one to each item of a comma-separated list.
func redactList(one func(string) string) func(string) string {
	return func(s string) string {
		items := splitList(s)
		for i, v := range items {
			items[i] = one(v)
		}
		return strings.Join(items, ",")
	}
}

// redactURL masks a URL's password ("(set)" for one that does not parse).
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(set)"
	}
	return u.Redacted()
}

// redactDSN masks a MySQL DSN's password ("(set)" for one that does not parse).
func redactDSN(s string) string {
	c, err := mysql.ParseDSN(s)
	if err != nil {
		return "(set)"
	}
	if c.Passwd != "" {
		c.Passwd = "xxxxx"
	}
	return c.FormatDSN()
}

// urlError drops the URL a *url.Error quotes (it may hold a password),
// keeping what is wrong with it.
func urlError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// placeholder is the mark of every placeholder the project ships (in
// deploy/systemd/flashsale.env.example and the README): a secret holding it,
// in any case, is refused at start.
const placeholder = "CHANGE-ME"

// isPlaceholder reports whether a secret setting's value holds placeholder.
func isPlaceholder(v string) bool {
	return strings.Contains(strings.ToUpper(v), placeholder)
}

// cmdline is the process's command line, os.Args, whose tail args (the flags
// fs parsed) is redacted by redactArgs.
func cmdline(fs *flag.FlagSet, args []string) []string {
	head := os.Args[:max(0, len(os.Args)-len(args))]
	return append(slices.Clone(head), redactArgs(fs, args)...)
}

// redactArgs returns args (a command line's flags, as fs parses them) with
// the value of every secret flag of fs replaced by "(set)": what
// /debug/pprof/cmdline may show.
func redactArgs(fs *flag.FlagSet, args []string) []string {
	out := append([]string(nil), args...)
	for i := 0; i < len(out); i++ {
		a := out[i]
		if a == "--" || len(a) < 2 || a[0] != '-' {
			return out // the flags end here
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		if f == nil {
			continue
		}
		if _, secret := f.Value.(*secretValue); !secret {
			if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); !hasValue && !(ok && bf.IsBoolFlag()) {
				i++ // the next argument is this flag's value
			}
			continue
		}
		if hasValue {
			out[i] = a[:strings.IndexByte(a, '=')+1] + "(set)"
		} else if i+1 < len(out) {
			out[i+1] = "(set)"
			i++
		}
	}
	return out
}
