package coprocess

/*
#include "shim.h"
*/
import "C"

import "unsafe"

// What the package's tests and benchmarks need from C (cgo cannot be used in _test.go files).

// triggerEventFromNewThread raises an event on a thread the Go runtime did not create, the way a
// driver's own thread does.
func triggerEventFromNewThread(name, payload string) {
	n, p := C.CString(name), C.CString(payload)
	defer free(n)
	defer free(p)
	C.cpgo_trigger_event_from_new_thread(n, p)
}

// dispatchLoopInC calls DispatchWithDriver n times from one C loop: the per-call cost a C host
// pays, for comparison with DispatchWithDriver from Go.
func dispatchLoopInC(driver string, object []byte, n int) Code {
	d := C.CString(driver)
	defer free(d)
	var data unsafe.Pointer
	if len(object) > 0 {
		data = unsafe.Pointer(&object[0])
	}
	return Code(C.cpgo_dispatch_loop(d, data, C.int(len(object)), C.long(n)))
}
