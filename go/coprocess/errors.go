package coprocess

import "fmt"

// Code is one of the bridge's stable status codes (enum CoProcessStatus in api.h).
type Code int

// The status codes of api.h.
const (
	CodeOK              Code = 0
	CodeNullArgument    Code = 1
	CodeInvalidLength   Code = 2
	CodeInvalidObject   Code = 3
	CodeUnknownDriver   Code = 4
	CodeNoDriver        Code = 5
	CodeDriverFailed    Code = 6
	CodeDriverBadOutput Code = 7
	CodeLoadFailed      Code = 8
	CodeInvalidConfig   Code = 9
	CodeInvalidUTF8     Code = 10
	CodeAlreadyExists   Code = 11
	CodeEmpty           Code = 12
	CodeDisabled        Code = 13
	CodePanic           Code = 14
	CodeInvalidJSON     Code = 15
	CodeInvalidAPI      Code = 16
	CodeUnknownAPI      Code = 17
	CodeStore           Code = 18
	CodeBundle          Code = 19
)

var codeNames = map[Code]string{
	CodeOK:              "COPROCESS_OK",
	CodeNullArgument:    "COPROCESS_ERR_NULL_ARGUMENT",
	CodeInvalidLength:   "COPROCESS_ERR_INVALID_LENGTH",
	CodeInvalidObject:   "COPROCESS_ERR_INVALID_OBJECT",
	CodeUnknownDriver:   "COPROCESS_ERR_UNKNOWN_DRIVER",
	CodeNoDriver:        "COPROCESS_ERR_NO_DRIVER",
	CodeDriverFailed:    "COPROCESS_ERR_DRIVER_FAILED",
	CodeDriverBadOutput: "COPROCESS_ERR_DRIVER_BAD_OUTPUT",
	CodeLoadFailed:      "COPROCESS_ERR_LOAD_FAILED",
	CodeInvalidConfig:   "COPROCESS_ERR_INVALID_CONFIG",
	CodeInvalidUTF8:     "COPROCESS_ERR_INVALID_UTF8",
	CodeAlreadyExists:   "COPROCESS_ERR_ALREADY_EXISTS",
	CodeEmpty:           "COPROCESS_ERR_EMPTY",
	CodeDisabled:        "COPROCESS_ERR_DISABLED",
	CodePanic:           "COPROCESS_ERR_PANIC",
	CodeInvalidJSON:     "COPROCESS_ERR_INVALID_JSON",
	CodeInvalidAPI:      "COPROCESS_ERR_INVALID_API",
	CodeUnknownAPI:      "COPROCESS_ERR_UNKNOWN_API",
	CodeStore:           "COPROCESS_ERR_STORE",
	CodeBundle:          "COPROCESS_ERR_BUNDLE",
}

// String returns the C name of the code, e.g. "COPROCESS_ERR_NO_DRIVER".
func (c Code) String() string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return fmt.Sprintf("CoProcessStatus(%d)", int(c))
}

// Error is a failed bridge call: the status code a program switches on and the bridge's message
// (CoProcessLastError) for a human. Op names the Go function that failed.
//
//	var cerr *coprocess.Error
//	if errors.As(err, &cerr) && cerr.Code == coprocess.CodeNoDriver { ... }
type Error struct {
	Op      string
	Code    Code
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("coprocess: %s: %s (%s)", e.Op, e.Message, e.Code)
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, &coprocess.Error{Code: coprocess.CodeNoDriver}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}
