// Package coprocess runs Tyk Gateway plugin hooks in-process through coprocess-bridge
// (libcoprocess_bridge): a Go gateway hands it serialized coprocess.Object messages and gets the
// drivers' answers back, without a gRPC server.
//
// The package is a thin layer over the bridge's C API (api.h): every function maps to one C call,
// and every one may be called from any number of goroutines at once. Failures are *Error values
// carrying the bridge's status code and message.
//
// Build: cgo finds the bridge through pkg-config (`make install` in the repository installs
// coprocess-bridge.pc); point PKG_CONFIG_PATH at another prefix to use a staged copy.
package coprocess

/*
#cgo pkg-config: coprocess-bridge
#include "shim.h"
*/
import "C"

import (
	"math"
	"reflect"
	"strings"
	"time"
	"unsafe"
)

// status turns a shim result into nil or an *Error, freeing the copied message.
func status(op string, s C.cpgo_status) error {
	if s.code == 0 {
		return nil
	}
	message := ""
	if s.message != nil {
		message = C.GoString(s.message)
		C.free(unsafe.Pointer(s.message))
	}
	return &Error{Op: op, Code: Code(s.code), Message: message}
}

// cstring copies s for C. A NUL byte would silently cut the string short in C, so it is refused.
func cstring(op, what, s string) (*C.char, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, &Error{Op: op, Code: CodeInvalidUTF8, Message: what + " contains a NUL byte"}
	}
	return C.CString(s), nil
}

// optional is cstring, except that "" becomes NULL (the bridge's "use the default").
func optional(op, what, s string) (*C.char, error) {
	if s == "" {
		return nil, nil
	}
	return cstring(op, what, s)
}

func free(p *C.char) {
	if p != nil {
		C.free(unsafe.Pointer(p))
	}
}

// Init configures the bridge (CoProcessInit): configJSON is shaped like tyk.conf's
// coprocess_options plus an optional "drivers" list, "store", "event_queue_capacity" and
// "log_level"; "" means defaults. Calling it is optional and repeating it is harmless.
func Init(configJSON string) error {
	c, err := optional("Init", "config", configJSON)
	if err != nil {
		return err
	}
	defer free(c)
	return status("Init", C.cpgo_init(c))
}

// LoadDriver loads the driver library at path under name (CoProcessLoadDriver), handing it
// configJSON ("" means "{}").
func LoadDriver(name, path, configJSON string) error {
	const op = "LoadDriver"
	n, err := cstring(op, "name", name)
	if err != nil {
		return err
	}
	defer free(n)
	p, err := cstring(op, "path", path)
	if err != nil {
		return err
	}
	defer free(p)
	c, err := optional(op, "config", configJSON)
	if err != nil {
		return err
	}
	defer free(c)
	return status(op, C.cpgo_load_driver(n, p, c))
}

// LoadBundle loads a plugin bundle directory into the driver named driver (CoProcessLoadBundle).
func LoadBundle(driver, path string) error {
	const op = "LoadBundle"
	d, err := cstring(op, "driver", driver)
	if err != nil {
		return err
	}
	defer free(d)
	p, err := cstring(op, "path", path)
	if err != nil {
		return err
	}
	defer free(p)
	return status(op, C.cpgo_load_bundle(d, p))
}

// LoadAPI tells the bridge about a Tyk API definition, classic or OAS (CoProcessLoadApi): Objects
// whose spec["APIID"] names it then run its hook chain. A definition with a loaded api_id
// replaces it.
func LoadAPI(definitionJSON []byte) error {
	d, err := cstring("LoadAPI", "definition", string(definitionJSON))
	if err != nil {
		return err
	}
	defer free(d)
	return status("LoadAPI", C.cpgo_load_api(d))
}

// UnloadAPI forgets the API loaded under apiID (CoProcessUnloadApi).
func UnloadAPI(apiID string) error {
	id, err := cstring("UnloadAPI", "api id", apiID)
	if err != nil {
		return err
	}
	defer free(id)
	return status("UnloadAPI", C.cpgo_unload_api(id))
}

// APIs returns the loaded APIs as the JSON array CoProcessListApis describes.
func APIs() string {
	p := C.CoProcessListApis()
	if p == nil {
		return "[]"
	}
	defer C.CoProcessFree(unsafe.Pointer(p))
	return C.GoString(p)
}

// Dispatch runs one hook: object is a serialized coprocess.Object, routed by its spec["APIID"]
// to a loaded API, or else to the only loaded driver. It returns the Object the driver (or the
// API's chain) produced. object is only read, and only during the call.
func Dispatch(object []byte) ([]byte, error) {
	return dispatch("Dispatch", false, "", object, nil)
}

// DispatchWithDriver is Dispatch routed to the driver loaded under driver.
func DispatchWithDriver(driver string, object []byte) ([]byte, error) {
	return dispatch("DispatchWithDriver", true, driver, object, nil)
}

// AppendDispatch is Dispatch that appends the answer to dst and returns the extended slice, as
// strconv.AppendInt does: a caller that keeps one buffer per goroutine (dst[:0]) allocates nothing
// per call once the buffer has grown to fit the answers.
func AppendDispatch(dst, object []byte) ([]byte, error) {
	return dispatch("Dispatch", false, "", object, dst)
}

// AppendDispatchWithDriver is DispatchWithDriver appending to dst, as AppendDispatch.
func AppendDispatchWithDriver(dst []byte, driver string, object []byte) ([]byte, error) {
	return dispatch("DispatchWithDriver", true, driver, object, dst)
}

// answerRoom is the spare room given to an answer beyond the Object's own size: a hook's answer is
// usually its input with a few fields appended.
const answerRoom = 512

// dispatch makes one cgo call in the common case: the driver name goes as Go bytes (the shim adds the
// NUL) and an answer that fits dst's spare capacity is copied there and freed by the shim. A longer
// answer costs a second call to free it.
func dispatch(op string, named bool, driver string, object, dst []byte) ([]byte, error) {
	if len(object) > math.MaxInt32 {
		return nil, &Error{Op: op, Code: CodeInvalidLength, Message: "object is larger than 2 GiB"}
	}
	var name *C.char
	var nameLen C.int
	if named {
		if strings.IndexByte(driver, 0) >= 0 {
			return nil, &Error{Op: op, Code: CodeInvalidUTF8, Message: "driver contains a NUL byte"}
		}
		if len(driver) > math.MaxInt32-1 {
			return nil, &Error{Op: op, Code: CodeInvalidLength, Message: "driver name is too long"}
		}
		// A non-nil pointer even for "": the shim tells "no driver" (Dispatch) by NULL.
		name = (*C.char)(unsafe.Pointer(stringData(driver)))
		nameLen = C.int(len(driver))
	}
	if cap(dst)-len(dst) < len(object)+answerRoom {
		grown := make([]byte, len(dst), len(dst)+len(object)+answerRoom)
		copy(grown, dst)
		dst = grown
	}
	spare := dst[len(dst):cap(dst)]
	var data unsafe.Pointer
	if len(object) > 0 {
		// Passing pointers into Go slices is allowed: the bridge reads object and the shim writes
		// spare during the call only.
		data = unsafe.Pointer(&object[0])
	}
	room := len(spare)
	if room > math.MaxInt32 {
		room = math.MaxInt32
	}
	// A plain pointer variable: an &spare[0] written in the call would be boxed for cgo's pointer
	// check, one allocation per call.
	buf := unsafe.Pointer(&spare[0])
	r := C.cpgo_dispatch(name, nameLen, data, C.int(len(object)), buf, C.int(room))
	if err := status(op, r.status); err != nil {
		return nil, err
	}
	if r.spill.p_data != nil {
		spill := r.spill // its own variable: taking r's address would move r to the heap on every call
		defer C.CoProcessMessageFree(&spill)
		return append(dst, unsafe.Slice((*byte)(spill.p_data), int(spill.length))...), nil
	}
	return dst[:len(dst)+int(r.answer_len)], nil
}

// stringData points at s's bytes; for "" at a byte that is never read (the shim copies 0 bytes).
func stringData(s string) *byte {
	if s == "" {
		return &emptyName
	}
	return (*byte)(unsafe.Pointer((*reflect.StringHeader)(unsafe.Pointer(&s)).Data))
}

var emptyName byte

// DispatchEvent delivers a Tyk event (JSON text) to every loaded driver.
func DispatchEvent(eventJSON []byte) error {
	e, err := cstring("DispatchEvent", "event", string(eventJSON))
	if err != nil {
		return err
	}
	defer free(e)
	return status("DispatchEvent", C.cpgo_dispatch_event(e))
}

// Reload calls every driver's reload hook and re-opens drivers whose file changed on disk.
func Reload() {
	C.Reload()
}

// SetPlainErrors chooses how a failed hook on the API path is reported: false (the default)
// answers it as Tyk does (403/500 through return_overrides), true makes Dispatch fail with the
// code.
func SetPlainErrors(plain bool) {
	v := C.int(0)
	if plain {
		v = 1
	}
	C.CoProcessSetPlainErrors(v)
}

// StoreData stores value under key in the bridge's store (embedded, or Redis) for ttl, rounded up
// to whole seconds; ttl <= 0 means no expiry.
func StoreData(key, value string, ttl time.Duration) error {
	const op = "StoreData"
	k, err := cstring(op, "key", key)
	if err != nil {
		return err
	}
	defer free(k)
	v, err := cstring(op, "value", value)
	if err != nil {
		return err
	}
	defer free(v)
	return status(op, C.cpgo_store_data(k, v, C.int(ttlSeconds(ttl))))
}

func ttlSeconds(ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	secs := int64((ttl + time.Second - 1) / time.Second)
	if secs > math.MaxInt32 {
		secs = math.MaxInt32
	}
	return secs
}

// GetData returns the value stored under key, "" when it is absent or expired.
func GetData(key string) (string, error) {
	k, err := cstring("GetData", "key", key)
	if err != nil {
		return "", err
	}
	defer free(k)
	var value *C.char
	if err := status("GetData", C.cpgo_get_data(k, &value)); err != nil {
		return "", err
	}
	defer C.CoProcessFree(unsafe.Pointer(value))
	return C.GoString(value), nil
}

// TriggerEvent raises a Tyk event, as a driver does: it reaches the event handler or the queue.
func TriggerEvent(name, payload string) error {
	n, err := cstring("TriggerEvent", "name", name)
	if err != nil {
		return err
	}
	defer free(n)
	p, err := cstring("TriggerEvent", "payload", payload)
	if err != nil {
		return err
	}
	defer free(p)
	C.TykTriggerEvent(n, p)
	return nil
}

// Event is a Tyk event raised by a driver.
type Event struct {
	Name    string
	Payload string
}

// NextEvent takes the oldest event queued while no event handler was set.
func NextEvent() (Event, bool) {
	var name, payload *C.char
	if C.CoProcessNextEvent(&name, &payload) != 0 {
		return Event{}, false
	}
	defer C.CoProcessFree(unsafe.Pointer(name))
	defer C.CoProcessFree(unsafe.Pointer(payload))
	return Event{Name: C.GoString(name), Payload: C.GoString(payload)}, true
}

// Shutdown shuts every driver down and forgets loaded APIs, queued events and stored data. The
// bridge can be initialised and used again afterwards. Handlers stay set.
func Shutdown() {
	C.CoProcessShutdown()
}

// Version returns the bridge's version and the driver ABI version it loads (CoProcessVersion),
// e.g. "coprocess-bridge 0.1.0 (driver ABI 1)".
func Version() string {
	return C.GoString(C.CoProcessVersion())
}
