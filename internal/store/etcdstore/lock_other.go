//go:build !unix

package etcdstore

import "os"

// lockDir is a no-op where flock is not available; etcd's own (blocking)
// database lock still prevents two stores on one directory.
func lockDir(string) (*os.File, error) { return nil, nil }
