package coprocess

import "testing"

// The per-call cost of DispatchWithDriver on the C driver (a small Pre Object): from Go through cgo,
// and from a C loop (what a C host pays). Run side by side:
//
//	go test -run '^$' -bench Dispatch
func BenchmarkDispatchFromGo(b *testing.B) {
	obj := preObject("test")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := DispatchWithDriver("c", obj); err != nil {
			b.Fatal(err)
		}
	}
}

// The same with one reused buffer (AppendDispatchWithDriver): what a gateway keeping a buffer per
// worker pays.
func BenchmarkAppendDispatchFromGo(b *testing.B) {
	obj := preObject("test")
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var err error
		if buf, err = AppendDispatchWithDriver(buf[:0], "c", obj); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDispatchFromC(b *testing.B) {
	obj := preObject("test")
	if code := dispatchLoopInC("c", obj, b.N); code != CodeOK {
		b.Fatal(code)
	}
}

func BenchmarkDispatchFromGoParallel(b *testing.B) {
	obj := preObject("test")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := DispatchWithDriver("c", obj); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
