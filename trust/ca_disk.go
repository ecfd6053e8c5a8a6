package trust

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// On disk, a CA directory holds one file per root, root-<serial>.pem (the
// certificate and its PKCS #8 private key, mode 0600), and state.json, which
// orders the roots, names the active one and bounds what each has signed.

const caStateFile = "state.json"

type caState struct {
	Active string        `json:"active"`
	Roots  []caStateRoot `json:"roots"`
}

type caStateRoot struct {
	Serial      string    `json:"serial"`
	IssuedUntil time.Time `json:"issued_until,omitzero"`
}

func rootFileName(a *authority) string {
	return fmt.Sprintf("root-%x.pem", a.cert.SerialNumber)
}

// load reads the CA directory. It reports false when the directory holds no
// CA yet.
func (c *CA) load() (bool, error) {
	data, err := os.ReadFile(filepath.Join(c.dir, caStateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("trust: read CA state: %w", err)
	}
	var st caState
	if err := json.Unmarshal(data, &st); err != nil {
		return false, fmt.Errorf("trust: decode CA state %s: %w", filepath.Join(c.dir, caStateFile), err)
	}
	c.active = -1
	for _, r := range st.Roots {
		a, err := c.loadRoot(filepath.Join(c.dir, "root-"+r.Serial+".pem"))
		if err != nil {
			return false, err
		}
		a.issuedUntil, a.persistedUntil = r.IssuedUntil, r.IssuedUntil
		if r.Serial == st.Active {
			c.active = len(c.roots)
		}
		c.roots = append(c.roots, a)
	}
	if c.active < 0 {
		return false, fmt.Errorf("trust: CA state in %s names no active root among %d", c.dir, len(c.roots))
	}
	return true, nil
}

func (c *CA) loadRoot(path string) (*authority, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trust: read root: %w", err)
	}
	a := &authority{}
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		switch block.Type {
		case "CERTIFICATE":
			if a.cert, err = x509.ParseCertificate(block.Bytes); err != nil {
				return nil, fmt.Errorf("trust: parse root certificate %s: %w", path, err)
			}
		case "PRIVATE KEY":
			key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("trust: parse root key %s: %w", path, err)
			}
			signer, ok := key.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("trust: root key %s cannot sign", path)
			}
			a.key = signer
		}
	}
	if a.cert == nil || a.key == nil {
		return nil, fmt.Errorf("trust: %s needs a CERTIFICATE and a PRIVATE KEY block", path)
	}
	ec, ok := a.key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("trust: root key %s is not ECDSA P-256", path)
	}
	if !ec.PublicKey.Equal(a.cert.PublicKey) {
		return nil, fmt.Errorf("trust: root key %s does not match its certificate", path)
	}
	if !a.cert.IsCA {
		return nil, fmt.Errorf("trust: root %s is not a CA certificate", path)
	}
	return a, nil
}

// saveLocked writes every root and the state under the directory lock;
// it does nothing without a directory. The caller holds c.mu.
func (c *CA) saveLocked() error { return c.underDirLock(c.writeAllLocked) }

// saveStateLocked writes state.json under the directory lock; it does
// nothing without a directory. The caller holds c.mu.
func (c *CA) saveStateLocked() error { return c.underDirLock(c.writeStateLocked) }

// underDirLock runs write holding the directory lock (lockDir), unless the
// CA has no directory.
func (c *CA) underDirLock(write func() error) error {
	if c.dir == "" {
		return nil
	}
	unlock, err := lockDir(c.dir)
	if err != nil {
		return err
	}
	defer unlock()
	return write()
}

// writeAllLocked writes the roots not on disk yet and state.json; the caller
// holds c.mu and the directory lock.
func (c *CA) writeAllLocked() error {
	for _, a := range c.roots {
		path := filepath.Join(c.dir, rootFileName(a))
		if _, err := os.Stat(path); err == nil {
			continue
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(a.key)
		if err != nil {
			return fmt.Errorf("trust: encode root key: %w", err)
		}
		data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.cert.Raw})
		data = append(data, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
		if err := writeFileAtomic(path, data); err != nil {
			return err
		}
	}
	return c.writeStateLocked()
}

// writeStateLocked writes state.json; the caller holds c.mu and the
// directory lock.
func (c *CA) writeStateLocked() error {
	st := caState{Active: fmt.Sprintf("%x", c.roots[c.active].cert.SerialNumber)}
	for _, a := range c.roots {
		st.Roots = append(st.Roots, caStateRoot{
			Serial:      fmt.Sprintf("%x", a.cert.SerialNumber),
			IssuedUntil: a.persistedUntil,
		})
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("trust: encode CA state: %w", err)
	}
	return writeFileAtomic(filepath.Join(c.dir, caStateFile), data)
}

// removeRootFile deletes a dropped root's file. A failure leaves a file that
// state.json no longer names, which load ignores.
func (c *CA) removeRootFile(a *authority) {
	_ = os.Remove(filepath.Join(c.dir, rootFileName(a)))
}

// lockDir creates dir if needed and takes an exclusive advisory lock on it
// (flock of the directory itself, which any process that may read it can
// take, whatever its user), waiting for the holder to release it. It
// returns the release. flock locks are per open file, so two CAs of one
// process exclude each other too.
func lockDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("trust: CA directory: %w", err)
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("trust: CA directory: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("trust: lock CA directory %s: %w", dir, err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		_ = f.Close()
	}, nil
}

// writeFileAtomic writes data to a 0600 temporary file and renames it over
// path, so that a crash leaves the old or the new content, never a mix.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("trust: write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }()
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return fmt.Errorf("trust: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("trust: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("trust: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("trust: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("trust: write %s: %w", path, err)
	}
	return nil
}
