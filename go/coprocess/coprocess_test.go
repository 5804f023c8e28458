package coprocess

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The drivers come from the Rust test that runs `go test` (tests/go_package.rs), which builds them:
// COPROCESS_C_DRIVER (examples/c_driver) and COPROCESS_RUST_DRIVER (examples/rust_driver).
var cDriver, rustDriver string

func TestMain(m *testing.M) {
	cDriver, rustDriver = os.Getenv("COPROCESS_C_DRIVER"), os.Getenv("COPROCESS_RUST_DRIVER")
	if cDriver == "" || rustDriver == "" {
		fmt.Fprintln(os.Stderr, "SKIPPED: set COPROCESS_C_DRIVER and COPROCESS_RUST_DRIVER "+
			"(cargo test --test go_package does)")
		os.Exit(0)
	}
	if err := Init(`{"log_level": "info"}`); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := loadDrivers(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	Shutdown()
	os.Exit(code)
}

func loadDrivers() error {
	if err := LoadDriver("c", cDriver, ""); err != nil {
		return err
	}
	return LoadDriver("rust", rustDriver, `{"tokens": ["go-token"]}`)
}

// Objects, encoded by hand (the package has no protobuf dependency).
func field(num int, payload []byte) []byte {
	out := binary.AppendUvarint([]byte{byte(num<<3 | 2)}, uint64(len(payload)))
	return append(out, payload...)
}

func str(num int, s string) []byte { return field(num, []byte(s)) }

// preObject is hook_type=Pre, hook_name=name, spec entries as given.
func preObject(name string, spec ...string) []byte {
	obj := []byte{0x08, 0x01}
	if name != "" {
		obj = append(obj, str(2, name)...)
	}
	for i := 0; i+1 < len(spec); i += 2 {
		obj = append(obj, field(6, append(str(1, spec[i]), str(2, spec[i+1])...))...)
	}
	return obj
}

// hasHeader reports whether the Object holds the encoded map entry {1: name, 2: value}.
func hasHeader(object []byte, name, value string) bool {
	return bytes.Contains(object, append(str(1, name), str(2, value)...))
}

func codeOf(t *testing.T, err error) Code {
	t.Helper()
	var cerr *Error
	if !errors.As(err, &cerr) {
		t.Fatalf("want an *Error, got %T: %v", err, err)
	}
	if cerr.Message == "" {
		t.Fatalf("an *Error without a message: %#v", cerr)
	}
	return cerr.Code
}

func TestDispatchWithTheCDriver(t *testing.T) {
	out, err := DispatchWithDriver("c", preObject("test"))
	if err != nil {
		t.Fatal(err)
	}
	if !hasHeader(out, "X-Coprocess-Driver", "c") {
		t.Fatalf("the C driver's header is missing: %q", out)
	}
}

func TestDispatchWithTheRustDriver(t *testing.T) {
	out, err := DispatchWithDriver("rust", preObject("test"))
	if err != nil {
		t.Fatal(err)
	}
	if !hasHeader(out, "X-Rust-Driver", "rust") {
		t.Fatalf("the Rust driver's header is missing: %q", out)
	}
}

func TestVersionNamesTheDriverABI(t *testing.T) {
	v := Version()
	if !strings.HasPrefix(v, "coprocess-bridge ") || !strings.HasSuffix(v, " (driver ABI 1)") {
		t.Fatalf("Version() = %q", v)
	}
}

func TestFailuresAreTypedErrors(t *testing.T) {
	_, err := Dispatch(preObject("test"))
	if got := codeOf(t, err); got != CodeNoDriver {
		t.Fatalf("Dispatch with two drivers and no API: %v, want %v", got, CodeNoDriver)
	}
	if !errors.Is(err, &Error{Code: CodeNoDriver}) {
		t.Fatalf("errors.Is by code fails for %v", err)
	}
	if !strings.Contains(err.Error(), "COPROCESS_ERR_NO_DRIVER") {
		t.Fatalf("the text does not name the code: %v", err)
	}

	_, err = DispatchWithDriver("c", []byte{0xff, 0xff, 0xff})
	if got := codeOf(t, err); got != CodeInvalidObject {
		t.Fatalf("garbage: %v, want %v", got, CodeInvalidObject)
	}
	_, err = DispatchWithDriver("nope", preObject("test"))
	if got := codeOf(t, err); got != CodeUnknownDriver {
		t.Fatalf("unknown driver: %v", got)
	}
	_, err = DispatchWithDriver("c\x00d", preObject("test"))
	if got := codeOf(t, err); got != CodeInvalidUTF8 {
		t.Fatalf("NUL in a name: %v", got)
	}
	err = LoadDriver("missing", "/nonexistent/driver.so", "")
	if got := codeOf(t, err); got != CodeLoadFailed || !strings.Contains(err.Error(), "/nonexistent/driver.so") {
		t.Fatalf("a missing driver file: %v", err)
	}
	err = LoadDriver("c", cDriver, "")
	if got := codeOf(t, err); got != CodeAlreadyExists {
		t.Fatalf("a taken name: %v", err)
	}
	if err := DispatchEvent([]byte("{not json")); codeOf(t, err) != CodeInvalidJSON {
		t.Fatalf("an event that is not JSON: %v", err)
	}
	if err := Init(`{"drivers": 3}`); codeOf(t, err) != CodeInvalidConfig {
		t.Fatalf("a bad config: %v", err)
	}
}

func TestAppendDispatchAppendsToTheCallersBuffer(t *testing.T) {
	want, err := DispatchWithDriver("rust", preObject("test"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 0, 4096)
	buf = append(buf, "kept"...)
	got, err := AppendDispatchWithDriver(buf, "rust", preObject("test"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got[:4]) != "kept" || !bytes.Equal(got[4:], want) || &got[0] != &buf[0] {
		t.Fatalf("AppendDispatchWithDriver = %q (own buffer: %v), want %q after the prefix",
			got, &got[0] == &buf[0], want)
	}
	// A reused buffer: no allocation per call (the name travels as Go bytes, the answer is
	// copied into the spare room by the shim).
	obj := preObject("test")
	allocs := testing.AllocsPerRun(100, func() {
		if buf, err = AppendDispatchWithDriver(buf[:0], "rust", obj); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("AppendDispatchWithDriver with room allocates %v times per call", allocs)
	}
}

func TestAnAnswerLargerThanTheRoomIsCopiedWhole(t *testing.T) {
	// The Rust driver's Edit hook appends a 4 KB raw_body: more than answerRoom past the input.
	body := strings.Repeat("b", 4096)
	obj := preObject("Edit:body " + body)
	for _, dst := range [][]byte{nil, []byte("kept"), make([]byte, 0, len(obj)+answerRoom)} {
		got, err := AppendDispatchWithDriver(dst, "rust", obj)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(got, dst) || !bytes.Contains(got[len(dst):], field(14, []byte(body))) {
			t.Fatalf("the spilled answer lost its prefix or the body (%d bytes)", len(got))
		}
	}
	if out, err := Dispatch(nil); err == nil {
		t.Fatalf("Dispatch with two drivers and no API answered %q", out)
	}
}

func TestDriverNamesOfAnyLength(t *testing.T) {
	_, err := DispatchWithDriver("", preObject("test"))
	if got := codeOf(t, err); got != CodeUnknownDriver {
		t.Fatalf("driver \"\": %v", err)
	}
	// Past the shim's stack copy of the name: the whole name reaches the bridge.
	long := strings.Repeat("n", 300) + "-end"
	_, err = DispatchWithDriver(long, preObject("test"))
	if got := codeOf(t, err); got != CodeUnknownDriver || !strings.Contains(err.Error(), long) {
		t.Fatalf("a 304-byte driver name: %v", err)
	}
}

func TestEmptyObjectIsAValidObject(t *testing.T) {
	out, err := DispatchWithDriver("c", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 0 {
		t.Fatalf("the C driver changed an empty Object: %q", out)
	}
}

// collector records events; it is called from several threads at once.
type collector struct {
	mu     sync.Mutex
	events []Event
}

func (c *collector) handle(name, payload string) {
	c.mu.Lock()
	c.events = append(c.events, Event{name, payload})
	c.mu.Unlock()
}

func (c *collector) count(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.events {
		if e.Name == name {
			n++
		}
	}
	return n
}

func TestEventsReachTheGoHandler(t *testing.T) {
	var seen collector
	SetEventHandler(seen.handle)
	defer SetEventHandler(nil)

	event := `{"message": {"note": "from go"}, "handler_name": "h", "spec": {"APIID": "a", "OrgID": "o"}}`
	if err := DispatchEvent([]byte(event)); err != nil {
		t.Fatal(err)
	}
	if n := seen.count("CDriverEvent"); n != 1 {
		t.Fatalf("the C driver's re-raised event reached the handler %d times: %v", n, seen.events)
	}
	if err := TriggerEvent("FromGo", "{}"); err != nil {
		t.Fatal(err)
	}
	triggerEventFromNewThread("FromAForeignThread", "{}")
	if seen.count("FromGo") != 1 || seen.count("FromAForeignThread") != 1 {
		t.Fatalf("events: %v", seen.events)
	}

	// Without a handler, events wait in the queue.
	SetEventHandler(nil)
	if err := TriggerEvent("Queued", "payload"); err != nil {
		t.Fatal(err)
	}
	ev, ok := NextEvent()
	if !ok || ev != (Event{"Queued", "payload"}) {
		t.Fatalf("NextEvent: %v %v", ev, ok)
	}
	if _, ok := NextEvent(); ok {
		t.Fatal("the queue should be empty")
	}
}

func TestAPanickingHandlerDoesNotTakeTheProcessDown(t *testing.T) {
	SetEventHandler(func(string, string) { panic("handler bug") })
	defer SetEventHandler(nil)
	triggerEventFromNewThread("Boom", "{}")
	if err := TriggerEvent("Boom", "{}"); err != nil {
		t.Fatal(err)
	}
}

func TestLogLinesReachTheGoHandler(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	SetLogHandler(func(level, message string) {
		mu.Lock()
		lines = append(lines, level+": "+message)
		mu.Unlock()
	})
	defer SetLogHandler(nil)
	if err := LoadDriver("logged", rustDriver, ""); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, l := range lines {
		if strings.HasPrefix(l, "info: ") && strings.Contains(l, "loaded driver 'logged'") {
			return
		}
	}
	t.Fatalf("no info line about the load: %q", lines)
}

func TestStoreData(t *testing.T) {
	if err := StoreData("go:key", "value", 0); err != nil {
		t.Fatal(err)
	}
	if v, err := GetData("go:key"); err != nil || v != "value" {
		t.Fatalf("GetData: %q, %v", v, err)
	}
	if err := StoreData("go:short", "soon gone", time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if v, err := GetData("go:absent"); err != nil || v != "" {
		t.Fatalf("an absent key: %q, %v", v, err)
	}
	if err := StoreData("go:\x00", "v", 0); codeOf(t, err) != CodeInvalidUTF8 {
		t.Fatalf("a NUL in a key: %v", err)
	}
	if got := ttlSeconds(time.Millisecond); got != 1 {
		t.Fatalf("a positive TTL under a second must not become 'no expiry': %d", got)
	}
}

func TestReloadCallsTheDriversReloadHook(t *testing.T) {
	before, _ := GetData("c_driver:reloads")
	Reload()
	after, err := GetData("c_driver:reloads")
	if err != nil || after == "" || after == before {
		t.Fatalf("c_driver:reloads went from %q to %q (%v)", before, after, err)
	}
}

func TestAnAPIRunsItsChain(t *testing.T) {
	def := `{"api_id": "go-api", "org_id": "o", "custom_middleware": {"driver": "rust",
		"pre": [{"name": "ChainA"}, {"name": "ChainB"}]}}`
	if err := LoadAPI([]byte(def)); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := UnloadAPI("go-api"); err != nil {
			t.Fatal(err)
		}
	}()
	if !strings.Contains(APIs(), `"go-api"`) {
		t.Fatalf("APIs(): %s", APIs())
	}
	out, err := Dispatch(preObject("", "APIID", "go-api"))
	if err != nil {
		t.Fatal(err)
	}
	if !hasHeader(out, "X-Chain", "ChainA,ChainB") {
		t.Fatalf("the chain did not run in order: %q", out)
	}
	if err := LoadAPI([]byte(`{"api_id": 7}`)); codeOf(t, err) != CodeInvalidAPI {
		t.Fatalf("a bad definition: %v", err)
	}
	if err := UnloadAPI("never-loaded"); codeOf(t, err) != CodeUnknownAPI {
		t.Fatalf("unloading an unknown API: %v", err)
	}
}

func TestConcurrentGoroutines(t *testing.T) {
	var events atomic.Int64
	SetEventHandler(func(name, _ string) {
		if name == "CDriverEvent" {
			events.Add(1)
		}
	})
	defer SetEventHandler(nil)

	const goroutines, rounds = 16, 200
	var wrong atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				driver, header, value := "c", "X-Coprocess-Driver", "c"
				if (g+i)%2 == 1 {
					driver, header, value = "rust", "X-Rust-Driver", "rust"
				}
				out, err := DispatchWithDriver(driver, preObject("test"))
				if err != nil || !hasHeader(out, header, value) {
					wrong.Add(1)
				}
				if i%20 == 0 {
					if err := DispatchEvent([]byte(`{"message": {}}`)); err != nil {
						wrong.Add(1)
					}
				}
				if _, err := Dispatch([]byte{0xff}); err == nil {
					wrong.Add(1) // a failure on one goroutine must stay a failure
				}
			}
		}(g)
	}
	wg.Wait()
	if n := wrong.Load(); n != 0 {
		t.Fatalf("%d wrong answers out of %d", n, goroutines*rounds)
	}
	if n := events.Load(); n != goroutines*rounds/20 {
		t.Fatalf("%d events reached the handler, want %d", n, goroutines*rounds/20)
	}
}

// Last: Shutdown forgets the drivers; the bridge can be used again afterwards.
func TestShutdownAndStartAgain(t *testing.T) {
	Shutdown()
	_, err := DispatchWithDriver("c", preObject("test"))
	if codeOf(t, err) != CodeUnknownDriver {
		t.Fatalf("after Shutdown: %v", err)
	}
	if err := Init(""); err != nil {
		t.Fatal(err)
	}
	if err := loadDrivers(); err != nil {
		t.Fatal(err)
	}
	if _, err := DispatchWithDriver("c", preObject("test")); err != nil {
		t.Fatal(err)
	}
}
