package identity

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nimbo-cloud/nimbo/internal/errdefs"
	"github.com/nimbo-cloud/nimbo/internal/store"
)

// Tokens are sealed, not stored: AES-256-GCM over a compact payload, like
// Keystone's Fernet tokens. The keys live in the store so every API server of
// a cloud shares them; the first key seals, all of them open (rotation).

// tokenVersion is the first byte of every token.
const tokenVersion = 1

type tokenKeys struct {
	Keys [][]byte `json:"keys"`
}

type sealer struct{ aeads []cipher.AEAD }

func newSealer(keys [][]byte) (*sealer, error) {
	s := &sealer{}
	for _, k := range keys {
		blk, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		a, err := cipher.NewGCM(blk)
		if err != nil {
			return nil, err
		}
		s.aeads = append(s.aeads, a)
	}
	if len(s.aeads) == 0 {
		return nil, errors.New("identity: no token keys")
	}
	return s, nil
}

func (s *sealer) seal(plain []byte) string {
	a := s.aeads[0]
	buf := make([]byte, 1+a.NonceSize(), 1+a.NonceSize()+len(plain)+a.Overhead())
	buf[0] = tokenVersion
	_, _ = rand.Read(buf[1:])
	out := a.Seal(buf, buf[1:], plain, buf[:1])
	return base64.RawURLEncoding.EncodeToString(out)
}

func (s *sealer) open(tok string) ([]byte, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) < 1 || raw[0] != tokenVersion {
		return nil, false
	}
	for _, a := range s.aeads {
		if len(raw) < 1+a.NonceSize()+a.Overhead() {
			return nil, false
		}
		if p, err := a.Open(nil, raw[1:1+a.NonceSize()], raw[1+a.NonceSize():], raw[:1]); err == nil {
			return p, true
		}
	}
	return nil, false
}

// loadTokenKeys reads the token keys, creating the first one on a new cloud.
func (s *Service) loadTokenKeys(ctx context.Context) (*sealer, error) {
	if kv, ok := s.cache.Get(kTokenKeys); ok {
		var tk tokenKeys
		if err := json.Unmarshal(kv.Value, &tk); err != nil {
			return nil, fmt.Errorf("identity: corrupt token keys: %w", err)
		}
		return newSealer(tk.Keys)
	}
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	err := s.commit(ctx, store.Txn{Conds: []store.Cond{absent(kTokenKeys)}, Ops: []store.Op{put(kTokenKeys, tokenKeys{Keys: [][]byte{k}})}})
	if errors.Is(err, errdefs.ErrConflict) { // another server made them first
		return s.loadTokenKeys(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("identity: creating token keys: %w", err)
	}
	return newSealer([][]byte{k})
}
