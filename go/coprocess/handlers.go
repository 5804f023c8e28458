package coprocess

/*
#include "shim.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime/cgo"
	"sync/atomic"
)

// EventHandler receives the events drivers raise (name and payload, usually JSON).
type EventHandler func(name, payload string)

// LogHandler receives the bridge's and the drivers' log lines; level is "debug", "info",
// "warning" or "error".
type LogHandler func(level, message string)

// A slot holds the current Go handler. The C side gets a cgo.Handle to the slot as user_data; the
// slot lives as long as the process, so a bridge thread still running the previous handler never
// sees a deleted handle.
type eventSlot struct{ fn atomic.Value } // EventHandler
type logSlot struct{ fn atomic.Value }   // LogHandler

var (
	events      = &eventSlot{}
	logs        = &logSlot{}
	eventHandle = cgo.NewHandle(events)
	logHandle   = cgo.NewHandle(logs)
)

// SetEventHandler makes h receive every event (instead of the queue NextEvent drains); nil
// removes it. h is called on the thread that raised the event — a goroutine's or one of the
// bridge's or a driver's own threads — possibly from several at once, so it must be safe for
// concurrent use and should return quickly. A panic in h is recovered and reported on stderr.
func SetEventHandler(h EventHandler) {
	if h == nil {
		C.cpgo_clear_event_handler()
		events.fn.Store(EventHandler(nil))
		return
	}
	events.fn.Store(h)
	C.cpgo_set_event_handler(C.uintptr_t(eventHandle))
}

// SetLogHandler makes h receive every log line (instead of stderr); nil removes it. Called like an
// EventHandler: from any thread, possibly concurrently.
func SetLogHandler(h LogHandler) {
	if h == nil {
		C.cpgo_clear_log_handler()
		logs.fn.Store(LogHandler(nil))
		return
	}
	logs.fn.Store(h)
	C.cpgo_set_log_handler(C.uintptr_t(logHandle))
}

// A panic must not unwind into the bridge's C frames: that would end the process.
func recoverHandler(what string) {
	if r := recover(); r != nil {
		fmt.Fprintf(os.Stderr, "coprocess: the %s handler panicked: %v\n", what, r)
	}
}

//export coprocessGoEvent
func coprocessGoEvent(name, payload *C.char, handle C.uintptr_t) {
	defer recoverHandler("event")
	slot, ok := cgo.Handle(handle).Value().(*eventSlot)
	if !ok {
		return
	}
	if h, _ := slot.fn.Load().(EventHandler); h != nil {
		h(C.GoString(name), C.GoString(payload))
	}
}

//export coprocessGoLog
func coprocessGoLog(message, level *C.char, handle C.uintptr_t) {
	defer recoverHandler("log")
	slot, ok := cgo.Handle(handle).Value().(*logSlot)
	if !ok {
		return
	}
	if h, _ := slot.fn.Load().(LogHandler); h != nil {
		h(C.GoString(level), C.GoString(message))
	}
}
