package config

import (
	"errors"
	"unicode/utf8"
)

// Sentinels that every *FieldError unwraps to, for callers that branch on the kind of
// problem rather than on the message.
var (
	// ErrSyntax: the file is not valid TOML, or a value has the wrong TOML type.
	ErrSyntax = errors.New("syntax error")
	// ErrUnknownKey: a key that homingd does not know (often a typo).
	ErrUnknownKey = errors.New("unknown key")
	// ErrMissing: a required key is absent or empty.
	ErrMissing = errors.New("missing")
	// ErrInvalid: a value is out of range or malformed.
	ErrInvalid = errors.New("invalid value")
	// ErrConflict: values contradict each other (duplicates, mutually exclusive keys).
	ErrConflict = errors.New("conflict")
)

// FieldError is one problem with one key of one file. Its message reads
// "configs/h1.toml: host.id: must be 1..4095, got 0". Parse returns all FieldErrors of
// a file joined with errors.Join.
type FieldError struct {
	File string // the name given to Parse (the path for Load)
	Key  string // dotted key, with an index for arrays of tables: "peers[1].id"
	Msg  string // what is wrong
	Kind error  // one of the sentinels above
}

func (e *FieldError) Error() string {
	s := e.File + ": "
	if e.Key != "" {
		s += e.Key + ": "
	}
	return s + e.Msg
}

// Unwrap returns the sentinel, so that errors.Is(err, config.ErrInvalid) works.
func (e *FieldError) Unwrap() error { return e.Kind }

// Problems returns the FieldErrors inside an error returned by Parse or Load
// (nil for other errors).
func Problems(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if fe, ok := err.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	return out
}

// Values of the file that an error echoes are cut to maxEcho characters (a key file's
// contents pasted into a string, a runaway line): the error stays one readable line.
const (
	maxEcho = 64
	maxMsg  = 512 // a whole message, for the TOML decoder's own
)

// clip cuts s to maxEcho characters and marks the cut with "…".
func clip(s string) string { return clipLen(s, maxEcho) }

func clipLen(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i, k := 0, 0
	for i = range s {
		if k == n {
			break
		}
		k++
	}
	return s[:i] + "…"
}
