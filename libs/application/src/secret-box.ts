import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export class MasterKeyError extends Error {
  override readonly name = 'MasterKeyError';
}

/**
 * Encrypts the secrets strata must be able to read back (API secret keys are HMAC keys, repository
 * credentials and passphrases are handed to hosts) with AES-256-GCM under a key kept in a file outside
 * the database. Ciphertexts look like `v1:<iv>:<tag>:<data>` (base64url).
 */
export class SecretBox {
  private constructor(private readonly key: Buffer) {}

  static fromKey(key: Buffer): SecretBox {
    if (key.length !== 32) throw new MasterKeyError('the master key must be 32 bytes');
    return new SecretBox(key);
  }

  static fromFile(file: string): SecretBox {
    if (!existsSync(file)) throw new MasterKeyError(`master key file ${file} does not exist; run "strata migrate" to create it`);
    const key = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
    if (key.length !== 32) throw new MasterKeyError(`master key file ${file} must hold 32 bytes in base64`);
    return new SecretBox(key);
  }

  /** Creates the key file (mode 0600) when it does not exist yet; returns whether it did. */
  static ensureKeyFile(file: string): boolean {
    if (existsSync(file)) return false;
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, randomBytes(32).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
    chmodSync(file, 0o600);
    return true;
  }

  /**
   * The key the host agents hold, derived from this one (HKDF-SHA256): the management plane re-encrypts
   * what a host needs (repository credentials) under it, so no host holds the master key, which also
   * opens API secret keys. The derivation is one-way: the host key does not reveal the master key.
   */
  hostKey(): SecretBox {
    return new SecretBox(Buffer.from(hkdfSync('sha256', this.key, Buffer.alloc(0), 'strata host key v1', 32)));
  }

  /** Writes this key as a key file (base64, mode 0600); refuses to replace an existing file. */
  writeKeyFile(file: string): void {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, this.key.toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
    chmodSync(file, 0o600);
  }

  /** Identifies the key without revealing it, so a database can refuse a different key. */
  get fingerprint(): string {
    return createHash('sha256').update('strata-master-key').update(this.key).digest('hex').slice(0, 32);
  }

  encrypt(plaintext: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const data = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return ['v1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), data.toString('base64url')].join(':');
  }

  decrypt(ciphertext: string): string {
    const parts = ciphertext.split(':');
    const [version, iv, tag, data] = parts;
    if (parts.length !== 4 || version !== 'v1' || !iv || !tag) throw new MasterKeyError('not a strata ciphertext');
    try {
      // authTagLength: GCM would otherwise accept a truncated tag (down to 4 bytes), which weakens the check.
      const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64url'), { authTagLength: 16 });
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(data, 'base64url')), decipher.final()]).toString('utf8');
    } catch {
      throw new MasterKeyError('a stored secret cannot be decrypted with this master key');
    }
  }
}
