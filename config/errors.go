package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// FieldError is one problem with one key of the config file.
type FieldError struct {
	// Key is the path of the key, as written in the file: "flavors[2].max_runners".
	Key string
	// Reason says what is wrong and, where it helps, what was found.
	Reason string
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Reason }

// problems collects FieldErrors so Validate can report all of them at once.
type problems struct {
	errs []error
}

func (p *problems) add(key, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{Key: key, Reason: fmt.Sprintf(format, args...)})
}

func (p *problems) err() error {
	sort.SliceStable(p.errs, func(i, j int) bool {
		return fieldKey(p.errs[i]) < fieldKey(p.errs[j])
	})
	return errors.Join(p.errs...)
}

func fieldKey(err error) string {
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe.Key
	}
	return ""
}

// FieldErrors flattens an error returned by Load or Validate into its FieldErrors, for
// printing one per line. Errors that are not FieldErrors come back as Key "".
func FieldErrors(err error) []*FieldError {
	if err == nil {
		return nil
	}
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var fe *FieldError
		if errors.As(e, &fe) {
			out = append(out, fe)
			return
		}
		out = append(out, &FieldError{Reason: strings.TrimSpace(e.Error())})
	}
	walk(err)
	return out
}
