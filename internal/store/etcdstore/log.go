package etcdstore

import (
	"context"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// muted lists etcd log entries that are expected in nimbo's setup and say
// nothing useful to an operator: an entry is dropped when its message starts
// with msg and, if errSub is set, its "error" field contains errSub.
var muted = []struct{ msg, errSub string }{
	// The embedded member has no client listener (or one unix socket).
	{msg: "Running http and grpc server on single port"},
	// The client's retry interceptor logs every failed call, even those whose
	// error the Store returns to its caller (ErrInvalid, ErrCompacted...).
	{msg: "retrying of unary invoker failed"},
	// Auth is not enabled on the embedded member.
	{msg: "simple token is not cryptographically signed"},
	// A fresh member's storage version monitor can run before the first raft
	// term is in the backend; it retries and succeeds later
	// (etcd-io/etcd#18978, #20495).
	{msg: "Failed to detect schema version", errSub: "missing term information"},
	{msg: "Failed to detect schema version", errSub: "missing confstate information"},
	{msg: "failed to update storage version", errSub: "missing term information"},
	{msg: "failed to update storage version", errSub: "missing confstate information"},
}

// isMuted reports whether an entry matches muted.
func isMuted(msg string, fs []zapcore.Field) bool {
	for _, m := range muted {
		if !strings.HasPrefix(msg, m.msg) {
			continue
		}
		if m.errSub == "" {
			return true
		}
		for _, f := range fs {
			if f.Key != "error" {
				continue
			}
			if err, ok := f.Interface.(error); ok && strings.Contains(err.Error(), m.errSub) {
				return true
			}
			if strings.Contains(f.String, m.errSub) {
				return true
			}
		}
	}
	return false
}

// newZapLogger returns a zap logger that forwards entries at level and above
// to h, with attrs added to every record, except while mute is set.
func newZapLogger(h slog.Handler, level zapcore.Level, mute *atomic.Bool, attrs ...slog.Attr) *zap.Logger {
	return zap.New(&slogCore{h: h, level: level, mute: mute, attrs: attrs})
}

// slogCore is a zapcore.Core writing to a slog.Handler.
type slogCore struct {
	h     slog.Handler
	level zapcore.Level
	mute  *atomic.Bool // set while the store shuts down: etcd's errors then are noise
	attrs []slog.Attr
}

func (c *slogCore) Enabled(l zapcore.Level) bool {
	return l >= c.level && !c.mute.Load() && c.h.Enabled(context.Background(), slogLevel(l))
}

func (c *slogCore) With(fs []zapcore.Field) zapcore.Core {
	n := *c
	n.attrs = append(append([]slog.Attr(nil), c.attrs...), fieldAttrs(fs)...)
	return &n
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	// Entries muted by message alone are dropped here; those muted by their
	// error field, in Write.
	if !c.Enabled(e.Level) || isMuted(e.Message, nil) {
		return ce
	}
	return ce.AddCore(e, c)
}

func (c *slogCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	if isMuted(e.Message, fs) {
		return nil
	}
	r := slog.NewRecord(e.Time, slogLevel(e.Level), e.Message, 0)
	r.AddAttrs(c.attrs...)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(fieldAttrs(fs)...)
	return c.h.Handle(context.Background(), r)
}

func (c *slogCore) Sync() error { return nil }

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func fieldAttrs(fs []zapcore.Field) []slog.Attr {
	if len(fs) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fs {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, enc.Fields[k]))
	}
	return attrs
}
