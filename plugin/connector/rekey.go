package connector

import (
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gatehouse-auth/gatehouse/keystore/rekeying"
)

// RecordPrefix starts the store key of every connector's record.
const RecordPrefix = connectorPrefix

// RekeyCAKey seals the connector CA's private key in dataDir
// (connector-ca/ca-key.sealed) again with the new keystore of a rekey,
// replacing the file atomically (a new file renamed over it). A key that
// opens with the new keystore already (a rekey run again) is left alone.
// found is false when dataDir holds no CA key.
func RekeyCAKey(dataDir string, k rekeying.Keys) (found, changed bool, err error) {
	path := filepath.Join(dataDir, CADir, caKeyFile)
	raw, err := os.ReadFile(path) //nolint:gosec // G304: the CA key in the data_dir the operator names
	if errors.Is(err, fs.ErrNotExist) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("reading connector CA key: %v", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != caKeyPEMType {
		return true, false, fmt.Errorf("connector CA key %s is corrupt", path)
	}
	if _, err := k.New.Open(block.Bytes, caKeyContext); err == nil {
		return true, false, nil
	}
	der, err := k.Old.Open(block.Bytes, caKeyContext)
	if err != nil {
		return true, false, fmt.Errorf("connector CA key %s opens with neither keystore: %v", path, err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: caKeyPEMType, Bytes: k.New.Seal(der, caKeyContext)})
	tmp := path + ".rekey"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return true, false, err
	}
	if err := writeSynced(tmp, keyPEM, 0o600); err != nil {
		return true, false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return true, false, fmt.Errorf("replacing connector CA key %s: %v", path, err)
	}
	return true, true, syncDir(filepath.Dir(path))
}
