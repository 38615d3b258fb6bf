import { DomainError } from '../domain-error';
import { RepositoryType, validateMountOptions, validateRepositoryAddress } from './repository-address';

const ok: [RepositoryType, string][] = [
  ['nfs', 'nas.example.com:/export/backups'],
  ['nfs', '10.0.0.5:/export'],
  ['nfs', '[fd00::5]:/export/strata'],
  ['cifs', '//fileserver/backups'],
  ['cifs', '//10.1.1.1/share$/strata'],
  ['cephfs', 'mon1:6789,mon2:6789:/strata'],
  ['local', '/mnt/strata-backups'],
];
const bad: [RepositoryType, string][] = [
  ['nfs', '-o remount:/x'],
  ['nfs', 'host:/export backups'],
  ['nfs', 'host:/export\n/x'],
  ['nfs', 'host:relative'],
  ['nfs', 'host:/a/../etc'],
  ['nfs', 'ho$t:/x'],
  ['nfs', 'host:/x;reboot'],
  ['nfs', 'host:/x`id`'],
  ['cifs', '\\\\server\\share'],
  ['cifs', '//server/-share'],
  ['cephfs', ':/x'],
  ['local', 'relative/path'],
  ['local', '/'],
  ['local', '--bind'],
];

describe('repository address rules', () => {
  it.each(ok)('accepts %s %s', (type, address) => expect(validateRepositoryAddress(type, address)).toBe(address));
  it.each(bad)('refuses %s %j, naming address', (type, address) => {
    expect(() => validateRepositoryAddress(type, address)).toThrow(DomainError);
    try {
      validateRepositoryAddress(type, address);
    } catch (e) {
      expect((e as DomainError).parameter).toBe('address');
    }
  });
});

describe('mount option rules', () => {
  it('splits credentials off the visible options', () => {
    expect(validateMountOptions('vers=3.0,username=backup,password=s3cr3t,sec=ntlmssp')).toEqual({
      visible: 'vers=3.0,username=backup,sec=ntlmssp',
      secret: 'password=s3cr3t',
    });
  });
  it('accepts no options', () => expect(validateMountOptions('')).toEqual({ visible: '', secret: '' }));
  it.each(['-o,rw', 'rw nosuid', 'rw,,ro', 'a=b=c', 'x=$(reboot)', 'rw\u0000', 'key="v"', '-rw'])('refuses %j', (opts) => {
    expect(() => validateMountOptions(opts)).toThrow(DomainError);
  });
});
