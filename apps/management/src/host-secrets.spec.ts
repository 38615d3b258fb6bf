import { SecretBox } from '@strata/application';
import { BackupJobData } from '@strata/jobs';
import { HostSecrets } from './host-secrets';

describe('HostSecrets', () => {
  const master = SecretBox.fromKey(Buffer.alloc(32, 3));
  const job = (encryptedCredentials: string | null) =>
    ({ backupId: 'b', repository: { repositoryId: 'r', type: 'cifs', address: '//h/s', mountOptions: 'username=u', encryptedCredentials } }) as unknown as BackupJobData;

  it('re-encrypts repository credentials from the master key to the host key', () => {
    const sealed = new HostSecrets(master).seal(job(master.encrypt('password=hunter2-long')));
    const c = sealed.repository.encryptedCredentials!;
    expect(c).not.toContain('hunter2');
    expect(master.hostKey().decrypt(c)).toBe('password=hunter2-long');
    expect(() => master.decrypt(c)).toThrow(); // the master key no longer opens it: it is the host's
    expect(sealed.repository.mountOptions).toBe('username=u');
  });

  it('leaves a job without credentials (or without a repository) as it is', () => {
    const plain = job(null);
    expect(new HostSecrets(master).seal(plain)).toBe(plain);
    const other = { restoreId: 'x', disks: [] };
    expect(new HostSecrets(master).seal(other)).toBe(other);
  });

  it('derives the same host key from the same master key, and another from another', () => {
    const again = SecretBox.fromKey(Buffer.alloc(32, 3)).hostKey();
    expect(again.decrypt(master.hostKey().encrypt('x'))).toBe('x');
    expect(again.fingerprint).not.toBe(master.fingerprint);
    expect(() => SecretBox.fromKey(Buffer.alloc(32, 4)).hostKey().decrypt(master.hostKey().encrypt('x'))).toThrow();
  });
});
