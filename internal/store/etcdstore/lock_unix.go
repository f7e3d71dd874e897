//go:build unix

package etcdstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

// lockDir takes an exclusive, non-blocking flock on dir/nimbo.lock, so that a
// second Open on a data directory in use fails at once (etcd itself would wait
// forever for its database lock). Closing the file releases the lock.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "nimbo.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("etcdstore: lock %s: %w", path, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("etcdstore: data dir %s is in use by another store: %w", dir, errdefs.ErrUnavailable)
		}
		return nil, fmt.Errorf("etcdstore: lock %s: %w", path, err)
	}
	return f, nil
}
