import { DomainError } from '../domain-error';
import { SETTINGS, SettingDefinition, findSetting, normalizeSettingValue } from './settings.registry';

/**
 * The Settings table of API.md, copied by hand on purpose: the registry must match the contract, so the
 * contract is restated here rather than derived from the registry. Units follow the registry (seconds,
 * minutes for retry intervals, hours for the validation interval). `scope: null`: API.md leaves it open
 * (the backup.validation.* row says "as CloudStack").
 */
const CONTRACT: { name: string; defaultValue: string; scope: 'global' | 'zone' | null }[] = [
  { name: 'backup.chain.size', defaultValue: '8', scope: 'zone' },
  { name: 'knib.timeout', defaultValue: '43200', scope: 'zone' },
  { name: 'backup.compression.task.enabled', defaultValue: 'true', scope: 'global' },
  { name: 'backup.compression.max.concurrent.compressions.per.host', defaultValue: '5', scope: 'global' },
  { name: 'backup.compression.max.concurrent.operations', defaultValue: '10', scope: 'zone' },
  { name: 'backup.compression.max.job.retries', defaultValue: '2', scope: 'global' },
  { name: 'backup.compression.retry.interval', defaultValue: '60', scope: 'global' },
  { name: 'backup.compression.timeout', defaultValue: '28800', scope: 'global' },
  { name: 'backup.compression.minimum.free.storage', defaultValue: '1.0', scope: 'zone' },
  { name: 'backup.compression.coroutines', defaultValue: '1', scope: 'global' },
  { name: 'backup.compression.rate.limit', defaultValue: '0', scope: 'global' },
  { name: 'backup.validation.task.enabled', defaultValue: 'true', scope: null },
  { name: 'backup.validation.interval', defaultValue: '24', scope: null },
  { name: 'backup.validation.max.concurrent.operations', defaultValue: '10', scope: null },
  { name: 'backup.validation.max.concurrent.operations.per.host', defaultValue: '1', scope: null },
  { name: 'backup.validation.max.job.retries', defaultValue: '2', scope: null },
  { name: 'backup.validation.retry.interval', defaultValue: '60', scope: null },
  { name: 'backup.validation.timeout', defaultValue: '3600', scope: null },
  { name: 'backup.validation.boot.default.timeout', defaultValue: '240', scope: null },
  { name: 'backup.validation.screenshot.default.wait', defaultValue: '60', scope: null },
  { name: 'backup.validation.end.chain.on.fail', defaultValue: 'true', scope: null },
  { name: 'nas.backup.encryption.enabled', defaultValue: 'false', scope: 'zone' },
  { name: 'nas.backup.encryption.passphrase', defaultValue: '', scope: 'zone' },
  { name: 'nas.backup.bandwidth.limit.mbps', defaultValue: '0', scope: 'zone' },
  { name: 'nas.backup.integrity.check', defaultValue: 'false', scope: 'zone' },
  { name: 'nas.infra.backup.enabled', defaultValue: 'false', scope: 'global' },
  { name: 'nas.infra.backup.location', defaultValue: '', scope: 'global' },
  { name: 'nas.infra.backup.retention', defaultValue: '7', scope: 'global' },
  { name: 'nas.infra.backup.include.database', defaultValue: 'false', scope: 'global' },
];

const setting = (name: string): SettingDefinition => {
  const def = findSetting(name);
  if (!def) throw new Error(`no setting ${name}`);
  return def;
};

function refusal(def: SettingDefinition, raw: string): DomainError {
  try {
    normalizeSettingValue(def, raw);
  } catch (e) {
    expect(e).toBeInstanceOf(DomainError);
    return e as DomainError;
  }
  throw new Error(`${def.name}: "${raw}" was accepted`);
}

const expectRefused = (def: SettingDefinition, raw: string) => {
  const error = refusal(def, raw);
  expect(error.kind).toBe('invalid');
  expect(error.parameter).toBe('value');
};

describe('settings registry', () => {
  describe('matches the Settings table of API.md', () => {
    it.each(CONTRACT)('$name exists with default "$defaultValue"', ({ name, defaultValue, scope }) => {
      const def = setting(name);
      expect(def.defaultValue).toBe(defaultValue);
      if (scope !== null) expect(def.scope).toBe(scope);
    });

    it('has no setting the contract does not name', () => {
      expect(SETTINGS.map((d) => d.name).sort()).toEqual(CONTRACT.map((c) => c.name).sort());
    });

    it('names every setting once', () => {
      expect(new Set(SETTINGS.map((d) => d.name)).size).toBe(SETTINGS.length);
    });

    it('lets a host override only backup.compression.max.concurrent.compressions.per.host ("global (host override)"), a global setting', () => {
      expect(SETTINGS.filter((d) => d.hostOverride).map((d) => d.name)).toEqual(['backup.compression.max.concurrent.compressions.per.host']);
      expect(setting('backup.compression.max.concurrent.compressions.per.host').scope).toBe('global');
    });

    it('flags the encryption passphrase, and only it, as secret', () => {
      expect(SETTINGS.filter((d) => d.secret).map((d) => d.name)).toEqual(['nas.backup.encryption.passphrase']);
    });

    it.each(SETTINGS.map((d) => [d.name, d] as const))('%s: its default passes its own rules unchanged', (_name, def) => {
      expect(normalizeSettingValue(def, def.defaultValue)).toBe(def.defaultValue);
    });

    it('finds nothing for an unknown name', () => {
      expect(findSetting('backup.chain.sizes')).toBeUndefined();
      expect(findSetting('BACKUP.CHAIN.SIZE')).toBeUndefined();
    });
  });

  describe('normalizeSettingValue', () => {
    const bool = setting('backup.compression.task.enabled');
    const int = setting('backup.chain.size'); // -1..1000
    const num = setting('backup.compression.minimum.free.storage'); // 0..100
    const str = setting('nas.infra.backup.location');
    const secret = setting('nas.backup.encryption.passphrase');

    it('takes booleans in any case and answers them in lower case', () => {
      expect(normalizeSettingValue(bool, 'True')).toBe('true');
      expect(normalizeSettingValue(bool, 'FALSE')).toBe('false');
      expect(normalizeSettingValue(bool, ' true ')).toBe('true');
    });

    it.each(['yes', '1', '0', '', 'truee'])('refuses "%s" as a boolean', (raw) => expectRefused(bool, raw));

    it('takes whole numbers within the range and answers them canonically', () => {
      expect(normalizeSettingValue(int, '5')).toBe('5');
      expect(normalizeSettingValue(int, ' 12 ')).toBe('12');
      expect(normalizeSettingValue(int, '007')).toBe('7');
      expect(normalizeSettingValue(int, '-1')).toBe('-1');
      expect(normalizeSettingValue(int, '1000')).toBe('1000');
    });

    it.each(['-2', '1001'])('refuses %s, outside the range -1..1000', (raw) => {
      const error = refusal(int, raw);
      expect(error.parameter).toBe('value');
      expect(error.message).toContain('between -1 and 1000');
    });

    it.each(['abc', '', ' ', '1.5', '1e3', '0x10', '+5', '5 6', 'NaN', 'Infinity', '99999999999999999999', '1000000000000000'])('refuses "%s" as a whole number', (raw) =>
      expectRefused(int, raw),
    );

    it('takes decimal numbers as written', () => {
      expect(normalizeSettingValue(num, '1.5')).toBe('1.5');
      expect(normalizeSettingValue(num, '2')).toBe('2');
      expect(normalizeSettingValue(num, '0')).toBe('0');
      expect(normalizeSettingValue(num, '100')).toBe('100');
    });

    it.each(['-0.5', '100.5', '1e3', '0x10', '.5', '1.', 'abc', '1,5'])('refuses "%s" as a number', (raw) => expectRefused(num, raw));

    it('takes strings, trimmed', () => {
      expect(normalizeSettingValue(str, ' /srv/strata-infra ')).toBe('/srv/strata-infra');
      expect(normalizeSettingValue(str, '')).toBe('');
    });

    it.each(['\u0000', '\u0007', '\n', '\r', '\t', '\u001b[31m', '\u007f'])('refuses control character %j in a string', (c) => expectRefused(str, `/srv/a${c}b`));

    it('refuses a control character at the end even though trimming would remove it', () => expectRefused(int, '5\n'));

    it('takes strings of up to 1024 characters', () => {
      const long = '/' + 'a'.repeat(1023);
      expect(normalizeSettingValue(str, long)).toBe(long);
      expectRefused(str, long + 'a');
    });

    it('refuses a relative infrastructure backup location', () => expectRefused(str, 'backups/infra'));

    it('keeps a secret exactly as given (spaces are part of a passphrase)', () => {
      expect(secret.secret).toBe(true);
      expect(secret.type).toBe('string');
      expect(normalizeSettingValue(secret, ' pass phrase ')).toBe(' pass phrase ');
    });

    it('refuses control characters and over-long values in a secret too', () => {
      expectRefused(secret, 'pass\nphrase');
      expectRefused(secret, 'x'.repeat(1025));
    });

    it('never echoes the refused value of a secret', () => {
      const error = refusal(secret, 'hunter2\u0007');
      expect(error.message).not.toContain('hunter2');
    });
  });
});
