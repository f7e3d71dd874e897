package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
)

// Password KDF: argon2id with the OWASP-recommended minimum (19 MiB, 2 passes,
// 1 lane). The parameters travel in each PHC string, so raising them later
// keeps old hashes verifiable.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonKeyLen    = 32
	// MaxPasswordLength bounds what the KDF is fed (Keystone's default is 4096).
	MaxPasswordLength = 4096
)

// KDFDescription names the password KDF and its cost, for reports.
const KDFDescription = "argon2id m=19456KiB t=2 p=1"

var b64 = base64.RawStdEncoding

// hashPassword returns an argon2id PHC string for pw.
func (s *Service) hashPassword(ctx context.Context, pw string) (string, error) {
	if len(pw) > MaxPasswordLength {
		return "", errdefs.Invalidf("Invalid input for field 'password': longer than %d characters.", MaxPasswordLength)
	}
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	release, err := s.kdfSlot(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemoryKiB, argonTime,
		argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// dummyHash is verified against when a user does not exist, so that a
// missing user takes as long as a wrong password.
var dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2Xp0Wf1mTfhZ7x0o0a8WkqRU4Pj7m0cJ1F0vS0B6Bqk"

// verifyHash reports whether pw matches a stored hash (argon2id PHC string or
// nimbo's salted sha256 for generated secrets).
func (s *Service) verifyHash(ctx context.Context, hash, pw string) (bool, error) {
	if len(pw) > MaxPasswordLength {
		return false, nil
	}
	if strings.HasPrefix(hash, "sha256$") {
		parts := strings.Split(hash, "$")
		if len(parts) != 3 {
			return false, nil
		}
		salt, err1 := b64.DecodeString(parts[1])
		want, err2 := b64.DecodeString(parts[2])
		if err1 != nil || err2 != nil {
			return false, nil
		}
		got := sha256.Sum256(append(salt, pw...))
		return subtle.ConstantTimeCompare(got[:], want) == 1, nil
	}
	var v, m, t, p int
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, nil
	}
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false, nil
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m <= 0 || t <= 0 || p <= 0 || p > 255 {
		return false, nil
	}
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false, nil
	}
	release, err := s.kdfSlot(ctx)
	if err != nil {
		return false, err
	}
	defer release()
	got := argon2.IDKey([]byte(pw), salt, uint32(t), uint32(m), uint8(p), uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// hashSecret hashes a generated, high-entropy secret (salted SHA-256: brute
// force of 256 random bits is infeasible, so a slow KDF buys nothing).
func hashSecret(secret string) string {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	sum := sha256.Sum256(append(salt, secret...))
	return "sha256$" + b64.EncodeToString(salt) + "$" + b64.EncodeToString(sum[:])
}

// kdfSlot bounds concurrent KDF runs: each takes 19 MiB.
func (s *Service) kdfSlot(ctx context.Context) (func(), error) {
	select {
	case s.hashes <- struct{}{}:
		return func() { <-s.hashes }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// newSecret returns 64 random bytes, URL-safe base64 (like Keystone's).
func newSecret() string {
	b := make([]byte, 64)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
