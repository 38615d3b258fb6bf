import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MasterKeyError, SecretBox } from './secret-box';

const key = Buffer.alloc(32, 7);
const box = SecretBox.fromKey(key);
const plaintext = 'VDaACYb0LV9eNjTetIOElcVQkvJck_J_QljX_FcHRj87ZKiy0z0ty0ZsYBkoXkY9b7eq1EhwJaw7FF3akA3KBQ';

function expectMasterKeyError(fn: () => unknown): void {
  expect(fn).toThrow(MasterKeyError);
}

/** Replaces the first character of a base64url field with another valid one. */
const flip = (field: string) => (field[0] === 'A' ? 'B' : 'A') + field.slice(1);

describe('SecretBox', () => {
  describe('encrypt and decrypt', () => {
    it.each([plaintext, '', 'pass phrase with spaces', 'ünïcødé ✓ 秘密', 'a:b:c', 'x'.repeat(10000)])('round-trips %j', (text) => {
      expect(box.decrypt(box.encrypt(text))).toBe(text);
    });

    it('decrypts with another box built from the same key', () => expect(SecretBox.fromKey(Buffer.from(key)).decrypt(box.encrypt(plaintext))).toBe(plaintext));

    it('looks like v1:<iv>:<tag>:<data> in base64url', () => {
      const parts = box.encrypt(plaintext).split(':');
      expect(parts).toHaveLength(4);
      expect(parts[0]).toBe('v1');
      for (const part of parts.slice(1)) expect(part).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(Buffer.from(parts[1], 'base64url')).toHaveLength(12);
      expect(Buffer.from(parts[2], 'base64url')).toHaveLength(16);
    });

    it('gives a different ciphertext each time', () => {
      const ciphertexts = new Set(Array.from({ length: 20 }, () => box.encrypt(plaintext)));
      expect(ciphertexts.size).toBe(20);
    });

    it('does not contain the plaintext, in clear or in base64', () => {
      const ciphertext = box.encrypt(plaintext);
      expect(ciphertext).not.toContain(plaintext);
      expect(ciphertext).not.toContain(plaintext.slice(0, 12));
      expect(ciphertext).not.toContain(Buffer.from(plaintext).toString('base64url').slice(0, 12));
      expect(ciphertext).not.toContain(Buffer.from(plaintext).toString('base64').slice(0, 12));
    });
  });

  describe('refuses with MasterKeyError', () => {
    const ciphertext = box.encrypt(plaintext);
    const [version, iv, tag, data] = ciphertext.split(':');

    it('a ciphertext made with another key', () => expectMasterKeyError(() => SecretBox.fromKey(randomBytes(32)).decrypt(ciphertext)));

    it('says so without echoing the secret', () => {
      expect.assertions(2);
      try {
        SecretBox.fromKey(randomBytes(32)).decrypt(ciphertext);
      } catch (e) {
        expect((e as Error).message).toMatch(/master key/);
        expect((e as Error).message).not.toContain(plaintext);
      }
    });

    it.each([
      ['the data', [version, iv, tag, flip(data)]],
      ['the iv', [version, flip(iv), tag, data]],
      ['the tag', [version, iv, flip(tag), data]],
      ['a truncated tag', [version, iv, Buffer.from(tag, 'base64url').subarray(0, 12).toString('base64url'), data]],
      ['a 4-byte tag', [version, iv, Buffer.from(tag, 'base64url').subarray(0, 4).toString('base64url'), data]],
      ['a truncated data', [version, iv, tag, data.slice(0, -2)]],
      ['an empty data', [version, iv, tag, '']],
      ['a data with an appended byte', [version, iv, tag, data + 'AA']],
      ['an empty iv', [version, 'A', tag, data]],
    ])('a ciphertext with tampered %s', (_what, parts) => expectMasterKeyError(() => box.decrypt(parts.join(':'))));

    it.each(['', 'hunter2', 'v2:' + ciphertext.slice(3), ciphertext.split(':').slice(0, 3).join(':'), ciphertext + ':extra', `v1::${tag}:${data}`, `v1:${iv}::${data}`])(
      'a text that is no strata ciphertext: %j',
      (text) => expectMasterKeyError(() => box.decrypt(text)),
    );
  });

  describe('keys', () => {
    it.each([0, 16, 31, 33, 64])('refuses a %d-byte key', (n) => expectMasterKeyError(() => SecretBox.fromKey(Buffer.alloc(n))));

    it('fingerprints a key stably, without revealing it', () => {
      const fingerprint = box.fingerprint;
      expect(fingerprint).toMatch(/^[0-9a-f]{32}$/);
      expect(SecretBox.fromKey(Buffer.from(key)).fingerprint).toBe(fingerprint);
      expect(box.fingerprint).toBe(fingerprint);
      expect(fingerprint).not.toContain(key.toString('hex').slice(0, 8));
      expect(fingerprint).not.toContain(key.toString('base64').slice(0, 8));
    });

    it('fingerprints different keys differently', () => expect(SecretBox.fromKey(Buffer.alloc(32, 8)).fingerprint).not.toBe(box.fingerprint));
  });

  describe('key file', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'strata-secret-box-'));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('creates a 0600 file holding 32 random bytes in base64, once', () => {
      const file = join(dir, 'nested', 'master.key');
      expect(SecretBox.ensureKeyFile(file)).toBe(true);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const content = readFileSync(file, 'utf8');
      expect(Buffer.from(content.trim(), 'base64')).toHaveLength(32);

      expect(SecretBox.ensureKeyFile(file)).toBe(false);
      expect(readFileSync(file, 'utf8')).toBe(content);
    });

    it('creates a missing directory readable by its owner only', () => {
      const file = join(dir, 'nested', 'master.key');
      SecretBox.ensureKeyFile(file);
      expect(statSync(join(dir, 'nested')).mode & 0o077).toBe(0);
    });

    it('creates a different key in each file', () => {
      const a = join(dir, 'a.key');
      const b = join(dir, 'b.key');
      SecretBox.ensureKeyFile(a);
      SecretBox.ensureKeyFile(b);
      expect(readFileSync(a, 'utf8')).not.toBe(readFileSync(b, 'utf8'));
    });

    it('reads the key it created: what one box encrypts, another from the same file decrypts', () => {
      const file = join(dir, 'master.key');
      SecretBox.ensureKeyFile(file);
      const first = SecretBox.fromFile(file);
      const second = SecretBox.fromFile(file);
      expect(second.fingerprint).toBe(first.fingerprint);
      expect(second.decrypt(first.encrypt(plaintext))).toBe(plaintext);
    });

    it('leaves an existing file alone', () => {
      const file = join(dir, 'master.key');
      const existing = key.toString('base64') + '\n';
      writeFileSync(file, existing, { mode: 0o600 });
      expect(SecretBox.ensureKeyFile(file)).toBe(false);
      expect(readFileSync(file, 'utf8')).toBe(existing);
      expect(SecretBox.fromFile(file).fingerprint).toBe(box.fingerprint);
    });

    it('refuses a missing file, telling how to create it', () => {
      const file = join(dir, 'missing.key');
      expect(() => SecretBox.fromFile(file)).toThrow(MasterKeyError);
      expect(() => SecretBox.fromFile(file)).toThrow(/strata migrate/);
    });

    it('refuses a file that holds no 32-byte key', () => {
      const file = join(dir, 'short.key');
      writeFileSync(file, randomBytes(16).toString('base64'));
      expectMasterKeyError(() => SecretBox.fromFile(file));
    });
  });
});
