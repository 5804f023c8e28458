module coprocess-bridge/go/coprocess

go 1.19
