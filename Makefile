# Conveniences; the README's two commands (scripts/up, scripts/test) need no make.
GO ?= go

.PHONY: build test lint bench clean

build:
	$(GO) build -o bin/nimbo ./cmd/nimbo

test:
	./scripts/test

lint:
	gofmt -l $$(git ls-files '*.go')
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

bench:
	./scripts/bench

clean:
	rm -rf bin
