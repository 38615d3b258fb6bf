import { invalid } from '../domain-error';

export const REPOSITORY_TYPES = ['nfs', 'cifs', 'cephfs', 'local'] as const;
export type RepositoryType = (typeof REPOSITORY_TYPES)[number];

/*
 * A repository's address and mount options end up as single argv entries of `mount` on every host
 * (`mount -t TYPE -o OPTIONS ADDRESS TARGET`). These rules make sure neither can ever become a second
 * argument or an option:
 * - no control characters, no whitespace, no quotes or backslashes, at most 1024 characters;
 * - an address never starts with `-`, and has the shape its type needs:
 *   nfs `host:/path`, cifs `//host/share[/path]`, cephfs `mon[,mon...]:/path` (mons as host or
 *   host:port), local an absolute path; hosts are names, IPv4 or [IPv6]; no `..` path segment;
 * - mount options are a comma-separated list of `key` or `key=value`, keys of letters, digits, `_`,
 *   `.` and `-` not starting with `-`, values without `,` `=` or the characters above.
 * Credentials in mount options (`password=`, `secret=`, `pass=`) are split off so that they can be
 * stored encrypted and never shown. Their values may also hold `!`, `#`, `*` and `?`, which real
 * passwords often do and which can neither split an argument nor start a command; everything else
 * above still applies to them.
 */
// eslint-disable-next-line no-control-regex
const FORBIDDEN = /[\u0000-\u0020\u007f"'`\\;&|<>(){}*?!#]/;
// eslint-disable-next-line no-control-regex
const FORBIDDEN_IN_CREDENTIALS = /[\u0000-\u0020\u007f"'`\\;&|<>(){}]/;
const HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*|\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]{2,45}\])$/;
const PATH = /^\/[a-zA-Z0-9._~+@%:,=/-]*$/;
const SECRET_KEYS = new Set(['password', 'pass', 'secret']);

function checkPath(path: string, parameter: string): void {
  if (!PATH.test(path) || path.split('/').includes('..')) {
    throw invalid(`${parameter} must end in an absolute path without ".." segments`, parameter);
  }
}

function checkHost(host: string, parameter: string): void {
  if (!HOST.test(host)) throw invalid(`${parameter} has an invalid host name "${host.slice(0, 64)}"`, parameter);
}

function checkHostWithPort(hostPort: string, parameter: string): void {
  const m = /^(.*?)(?::(\d{1,5}))?$/.exec(hostPort);
  if (!m || m[1].length === 0) throw invalid(`${parameter} has an empty monitor address`, parameter);
  checkHost(m[1], parameter);
  if (m[2] !== undefined && (Number(m[2]) < 1 || Number(m[2]) > 65535)) throw invalid(`${parameter} has an invalid port`, parameter);
}

export function validateRepositoryAddress(type: RepositoryType, address: string): string {
  const parameter = 'address';
  if (address.length === 0 || address.length > 1024) throw invalid('address must be 1 to 1024 characters', parameter);
  if (FORBIDDEN.test(address)) throw invalid('address must not contain whitespace, control characters, quotes or shell metacharacters', parameter);
  if (address.startsWith('-')) throw invalid('address must not start with "-"', parameter);
  switch (type) {
    case 'nfs': {
      const m = /^(\[[^\]]+\]|[^:]+):(\/.*)$/.exec(address);
      if (!m) throw invalid('an nfs address is host:/path', parameter);
      checkHost(m[1], parameter);
      checkPath(m[2], parameter);
      break;
    }
    case 'cifs': {
      const m = /^\/\/([^/]+)\/([^/]+)(\/.*)?$/.exec(address);
      if (!m) throw invalid('a cifs address is //host/share[/path]', parameter);
      checkHost(m[1], parameter);
      if (!/^[a-zA-Z0-9._$-]+$/.test(m[2]) || m[2].startsWith('-')) throw invalid('a cifs share name has letters, digits, ".", "_", "-" or "$"', parameter);
      if (m[3]) checkPath(m[3], parameter);
      break;
    }
    case 'cephfs': {
      const idx = address.indexOf(':/');
      if (idx <= 0) throw invalid('a cephfs address is mon[,mon...]:/path', parameter);
      const mons = address.slice(0, idx);
      for (const mon of mons.split(',')) checkHostWithPort(mon, parameter);
      checkPath(address.slice(idx + 1), parameter);
      break;
    }
    case 'local':
      checkPath(address, parameter);
      if (address === '/') throw invalid('a local repository cannot be the root directory', parameter);
      break;
  }
  return address;
}

export interface ParsedMountOptions {
  /** Options that may be shown and logged. */
  visible: string;
  /** Credentials, to be stored encrypted; empty when there are none. */
  secret: string;
}

export function validateMountOptions(raw: string): ParsedMountOptions {
  const parameter = 'mountopts';
  if (raw.length > 1024) throw invalid('mountopts must be at most 1024 characters', parameter);
  if (raw === '') return { visible: '', secret: '' };
  const metacharacters = () => invalid('mountopts must not contain whitespace, control characters, quotes or shell metacharacters', parameter);
  if (FORBIDDEN_IN_CREDENTIALS.test(raw)) throw metacharacters();
  const visible: string[] = [];
  const secret: string[] = [];
  for (const token of raw.split(',')) {
    const m = /^([a-zA-Z0-9_][a-zA-Z0-9_.-]{0,63})(?:=([^,=]{1,512}))?$/.exec(token);
    if (!m) throw invalid('mountopts is a comma-separated list of key or key=value (keys: letters, digits, "_", "." and "-", not starting with "-")', parameter);
    const isCredential = SECRET_KEYS.has(m[1].toLowerCase());
    if (!isCredential && FORBIDDEN.test(token)) throw metacharacters();
    (isCredential ? secret : visible).push(token);
  }
  return { visible: visible.join(','), secret: secret.join(',') };
}
