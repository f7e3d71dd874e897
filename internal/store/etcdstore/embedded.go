package etcdstore

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap/zapcore"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

// Defaults of Embedded.
const (
	// DefaultQuotaBackendBytes caps the embedded database file; writes past it
	// fail (errdefs.ErrUnavailable) until space is reclaimed.
	DefaultQuotaBackendBytes = 1 << 30
	// DefaultCompactionRetention is how much history the embedded store keeps
	// for watches to resume from.
	DefaultCompactionRetention = 10 * time.Minute
	// DefaultSnapshotCount is the number of applied entries between raft
	// snapshots, which bounds the in-memory raft log.
	DefaultSnapshotCount = 10000
	// DefaultWatchProgressInterval is how often an idle watch is told the
	// store's revision.
	DefaultWatchProgressInterval = 2 * time.Second
)

// Raft timing of the embedded member (etcd defaults: 100 and 1000).
const (
	embeddedTickMs     = 50
	embeddedElectionMs = 500
)

// maxUnixPath is the longest socket path Linux accepts (sun_path minus NUL).
const maxUnixPath = 107

// Embedded is a single-member etcd run inside the nimbo process.
type Embedded struct {
	// Dir holds etcd's data (created 0700 if missing), typically
	// <data-dir>/etcd. Only one process may use it at a time; Open fails
	// while another one holds it.
	Dir string
	// ClientSocket, when set, also serves the etcd v3 API (insecure, file
	// permissions only) on this unix socket, e.g. for
	// `etcdctl --endpoints unix://<path>`. nimbo itself never uses it. At most
	// 107 bytes long; a stale socket file is replaced.
	ClientSocket string
	// QuotaBackendBytes caps the database size; 0 means DefaultQuotaBackendBytes.
	QuotaBackendBytes int64
	// CompactionRetention is the history kept (periodic auto-compaction);
	// 0 means DefaultCompactionRetention, < 0 disables auto-compaction.
	CompactionRetention time.Duration
	// SnapshotCount is the number of entries between raft snapshots; 0 means
	// DefaultSnapshotCount.
	SnapshotCount uint64
	// WatchProgressInterval is the interval of progress notifications on idle
	// watches; 0 means DefaultWatchProgressInterval.
	WatchProgressInterval time.Duration
	// UnsafeNoFsync disables fsync: faster, but a crash can lose or corrupt
	// data. For tests only.
	UnsafeNoFsync bool
}

// placeholder URLs the embedded member advertises. They are recorded in its
// membership but never dialled or listened on: a single member has no peers,
// and nimbo reaches it in-process.
var (
	placeholderPeerURL   = url.URL{Scheme: "unix", Host: "nimbo-embedded-peer:0"}
	placeholderClientURL = url.URL{Scheme: "unix", Host: "nimbo-embedded-client:0"}
)

// embedded is a running embedded member.
type embedded struct {
	etcd *embed.Etcd
	lock *os.File // flock on the data dir; nil where unsupported
}

// close stops the member and then releases the data dir.
func (m *embedded) close() {
	m.etcd.Close()
	if m.lock != nil {
		m.lock.Close()
	}
}

func startEmbedded(ctx context.Context, x Embedded, log *slog.Logger, mute *atomic.Bool) (m *embedded, cli *clientv3.Client, err error) {
	if x.Dir == "" {
		return nil, nil, fmt.Errorf("etcdstore: Embedded.Dir is empty: %w", errdefs.ErrInvalid)
	}
	dir, err := filepath.Abs(x.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("etcdstore: %w: %w", errdefs.ErrInvalid, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("etcdstore: data dir: %w", err)
	}
	// etcd's data is the cloud's secrets (password hashes, token keys):
	// only root may read it, whoever made the directory.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("etcdstore: data dir: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil && lock != nil {
			lock.Close()
		}
	}()

	cfg := embed.NewConfig()
	cfg.Name = "nimbo"
	cfg.Dir = dir
	cfg.Logger = "zap"
	cfg.LogLevel = "warn"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(
		newZapLogger(log.Handler(), zapcore.WarnLevel, mute, slog.String("component", "etcd")))

	// No TCP anywhere: no peer listener, no metrics listener, no HTTP gateway,
	// and a client listener only on an explicit unix socket.
	cfg.ListenPeerUrls = nil
	cfg.AdvertisePeerUrls = []url.URL{placeholderPeerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.InitialClusterToken = "nimbo"
	cfg.ListenClientUrls = nil
	cfg.ListenClientHttpUrls = nil
	cfg.ListenMetricsUrls = nil
	cfg.AdvertiseClientUrls = []url.URL{placeholderClientURL}
	cfg.EnableGRPCGateway = false
	if x.ClientSocket != "" {
		sock, err := filepath.Abs(x.ClientSocket)
		if err != nil {
			return nil, nil, fmt.Errorf("etcdstore: client socket: %w: %w", errdefs.ErrInvalid, err)
		}
		if len(sock) > maxUnixPath {
			return nil, nil, fmt.Errorf("etcdstore: client socket path %q is longer than %d bytes: %w", sock, maxUnixPath, errdefs.ErrInvalid)
		}
		if fi, err := os.Lstat(sock); err == nil && fi.Mode().Type() == os.ModeSocket {
			_ = os.Remove(sock) // stale socket of a previous run
		}
		cfg.ListenClientUrls = []url.URL{{Scheme: "unix", Path: sock}}
	}

	cfg.QuotaBackendBytes = x.QuotaBackendBytes
	if cfg.QuotaBackendBytes <= 0 {
		cfg.QuotaBackendBytes = DefaultQuotaBackendBytes
	}
	switch {
	case x.CompactionRetention == 0:
		cfg.AutoCompactionMode, cfg.AutoCompactionRetention = "periodic", DefaultCompactionRetention.String()
	case x.CompactionRetention > 0:
		cfg.AutoCompactionMode, cfg.AutoCompactionRetention = "periodic", x.CompactionRetention.String()
	default:
		cfg.AutoCompactionMode, cfg.AutoCompactionRetention = "periodic", "0"
	}
	cfg.SnapshotCount = x.SnapshotCount
	if cfg.SnapshotCount == 0 {
		cfg.SnapshotCount = DefaultSnapshotCount
	}
	cfg.WatchProgressNotifyInterval = x.WatchProgressInterval
	if cfg.WatchProgressNotifyInterval <= 0 {
		cfg.WatchProgressNotifyInterval = DefaultWatchProgressInterval
	}
	cfg.UnsafeNoFsync = x.UnsafeNoFsync

	// A single member needs no long election timeout; shorter ticks make it
	// leader (and ready) within a few hundred milliseconds.
	cfg.TickMs = embeddedTickMs
	cfg.ElectionMs = embeddedElectionMs

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("etcdstore: start embedded etcd in %s: %w: %w", dir, errdefs.ErrUnavailable, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, nil, fmt.Errorf("etcdstore: embedded etcd in %s: %w: %w", dir, errdefs.ErrUnavailable, err)
	case <-ctx.Done():
		e.Close()
		return nil, nil, fmt.Errorf("etcdstore: embedded etcd in %s not ready: %w: %w", dir, errdefs.ErrUnavailable, ctx.Err())
	}
	go func() {
		for err := range e.Err() {
			log.Error("embedded etcd", "component", "etcd", "err", err)
		}
	}()
	return &embedded{etcd: e, lock: lock}, v3client.New(e.Server), nil
}
