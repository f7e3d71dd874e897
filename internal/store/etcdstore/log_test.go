package etcdstore

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestZapToSlog(t *testing.T) {
	var buf bytes.Buffer
	var mute atomic.Bool
	lg := newZapLogger(slog.NewTextHandler(&buf, nil), zapcore.WarnLevel, &mute, slog.String("component", "etcd")).
		With(zap.String("member", "m1"))
	lg.Info("chatty")
	lg.Warn("Running http and grpc server on single port. This is not recommended for production.")
	lg.Warn("Failed to detect schema version", zap.Error(errors.New("missing term information")))
	lg.Error("failed to update storage version", zap.Error(errors.New("cannot detect storage schema version: missing term information")))
	lg.Warn("slow disk", zap.Duration("took", 2e9), zap.Strings("urls", []string{"a", "b"}))
	lg.Error("failed to update storage version", zap.Error(errors.New("something real")))
	mute.Store(true)
	lg.Error("shutdown noise")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	for _, want := range []string{"level=WARN", `msg="slow disk"`, "component=etcd", "member=m1", "took=2s", "urls="} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("line %q lacks %q", lines[0], want)
		}
	}
	if !strings.Contains(lines[1], "level=ERROR") || !strings.Contains(lines[1], "something real") {
		t.Errorf("line %q", lines[1])
	}
}
