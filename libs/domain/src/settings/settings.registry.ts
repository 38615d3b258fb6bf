import { invalid } from '../domain-error';

export type SettingType = 'integer' | 'number' | 'boolean' | 'string';
export type SettingScope = 'global' | 'zone';

export interface SettingDefinition {
  name: string;
  type: SettingType;
  defaultValue: string;
  /** `zone`: a zone may override the global value. */
  scope: SettingScope;
  /** A host may override the global value (API.md: "global (host override)"); set with updateConfiguration hostid. */
  hostOverride?: boolean;
  category: 'Backup' | 'Compression' | 'Validation' | 'NAS' | 'Infrastructure';
  description: string;
  min?: number;
  max?: number;
  /** Shown as `******` and stored encrypted; never in an answer or a log. */
  secret?: boolean;
  isDynamic: boolean;
}

const HOUR = 3600;
const s = (d: SettingDefinition) => d;

/** Every setting of API.md, with CloudStack's defaults; bounds keep operators from obvious mistakes. */
export const SETTINGS: readonly SettingDefinition[] = [
  s({ name: 'backup.chain.size', type: 'integer', defaultValue: '8', scope: 'zone', category: 'Backup', min: -1, max: 1000, isDynamic: true, description: 'Backups per chain; 1 = every backup full; below 1 = unlimited.' }),
  s({ name: 'knib.timeout', type: 'integer', defaultValue: '43200', scope: 'zone', category: 'Backup', min: 1, max: 7 * 24 * HOUR, isDynamic: true, description: 'Seconds one backup or restore may run on a host before it is aborted.' }),
  s({ name: 'backup.compression.task.enabled', type: 'boolean', defaultValue: 'true', scope: 'global', category: 'Compression', isDynamic: true, description: 'Whether compression jobs are dispatched at all.' }),
  s({ name: 'backup.compression.max.concurrent.compressions.per.host', type: 'integer', defaultValue: '5', scope: 'global', hostOverride: true, category: 'Compression', min: -1, max: 1000, isDynamic: true, description: 'Starting jobs running at once on one host; below 1 = unlimited. A host may have its own value.' }),
  s({ name: 'backup.compression.max.concurrent.operations', type: 'integer', defaultValue: '10', scope: 'zone', category: 'Compression', min: -1, max: 10000, isDynamic: true, description: 'Starting jobs running at once in a zone; below 1 = unlimited.' }),
  s({ name: 'backup.compression.max.job.retries', type: 'integer', defaultValue: '2', scope: 'global', category: 'Compression', min: 0, max: 100, isDynamic: true, description: 'Retries after a failed compression attempt.' }),
  s({ name: 'backup.compression.retry.interval', type: 'number', defaultValue: '60', scope: 'global', category: 'Compression', min: 0, max: 7 * 24 * 60, isDynamic: true, description: 'Minutes to wait before retrying a failed compression attempt (fractions allowed: 0.5 = 30 s).' }),
  s({ name: 'backup.compression.timeout', type: 'integer', defaultValue: '28800', scope: 'global', category: 'Compression', min: 1, max: 7 * 24 * HOUR, isDynamic: true, description: 'Seconds one compression attempt may run before it is killed.' }),
  s({ name: 'backup.compression.minimum.free.storage', type: 'number', defaultValue: '1.0', scope: 'zone', category: 'Compression', min: 0, max: 100, isDynamic: true, description: 'Free space needed on the repository before compressing, as a multiple of the backup size.' }),
  s({ name: 'backup.compression.coroutines', type: 'integer', defaultValue: '1', scope: 'global', category: 'Compression', min: 1, max: 16, isDynamic: true, description: 'Parallel coroutines of qemu-img convert (-m).' }),
  s({ name: 'backup.compression.rate.limit', type: 'integer', defaultValue: '0', scope: 'global', category: 'Compression', min: -1, max: 100000, isDynamic: true, description: 'MB/s limit of qemu-img convert (-r); below 1 = unlimited.' }),
  s({ name: 'backup.validation.task.enabled', type: 'boolean', defaultValue: 'true', scope: 'global', category: 'Validation', isDynamic: true, description: 'Whether validation jobs are dispatched at all.' }),
  s({ name: 'backup.validation.interval', type: 'integer', defaultValue: '24', scope: 'global', category: 'Validation', min: 1, max: 24 * 365, isDynamic: true, description: 'Hours between validation dispatch rounds.' }),
  s({ name: 'backup.validation.max.concurrent.operations', type: 'integer', defaultValue: '10', scope: 'zone', category: 'Validation', min: -1, max: 10000, isDynamic: true, description: 'Validation jobs running at once in a zone; below 1 = unlimited.' }),
  s({ name: 'backup.validation.max.concurrent.operations.per.host', type: 'integer', defaultValue: '1', scope: 'global', category: 'Validation', min: -1, max: 1000, isDynamic: true, description: 'Validation jobs running at once on one host; below 1 = unlimited.' }),
  s({ name: 'backup.validation.max.job.retries', type: 'integer', defaultValue: '2', scope: 'global', category: 'Validation', min: 0, max: 100, isDynamic: true, description: 'Retries after a failed validation attempt.' }),
  s({ name: 'backup.validation.retry.interval', type: 'integer', defaultValue: '60', scope: 'global', category: 'Validation', min: 0, max: 7 * 24 * 60, isDynamic: true, description: 'Minutes to wait before retrying a failed validation attempt.' }),
  s({ name: 'backup.validation.timeout', type: 'integer', defaultValue: '3600', scope: 'global', category: 'Validation', min: 1, max: 7 * 24 * HOUR, isDynamic: true, description: 'Seconds one validation attempt may run.' }),
  s({ name: 'backup.validation.boot.default.timeout', type: 'integer', defaultValue: '240', scope: 'global', category: 'Validation', min: 1, max: 24 * HOUR, isDynamic: true, description: 'Seconds to wait for a validated VM to boot.' }),
  s({ name: 'backup.validation.screenshot.default.wait', type: 'integer', defaultValue: '60', scope: 'global', category: 'Validation', min: 0, max: 24 * HOUR, isDynamic: true, description: 'Seconds to wait before taking the validation screenshot.' }),
  s({ name: 'backup.validation.end.chain.on.fail', type: 'boolean', defaultValue: 'true', scope: 'global', category: 'Validation', isDynamic: true, description: 'End the backup chain when a validation fails.' }),
  s({ name: 'nas.backup.encryption.enabled', type: 'boolean', defaultValue: 'false', scope: 'zone', category: 'NAS', isDynamic: true, description: 'LUKS-encrypt backup files.' }),
  s({ name: 'nas.backup.encryption.passphrase', type: 'string', defaultValue: '', scope: 'zone', category: 'NAS', secret: true, isDynamic: true, description: 'Passphrase of encrypted backup files (secret, never shown).' }),
  s({ name: 'nas.backup.bandwidth.limit.mbps', type: 'integer', defaultValue: '0', scope: 'zone', category: 'NAS', min: 0, max: 1000000, isDynamic: true, description: 'Throttle of backup I/O in Mbit/s; 0 = unlimited.' }),
  s({ name: 'nas.backup.integrity.check', type: 'boolean', defaultValue: 'false', scope: 'zone', category: 'NAS', isDynamic: true, description: 'Run qemu-img check on each file after it is written.' }),
  s({ name: 'nas.infra.backup.enabled', type: 'boolean', defaultValue: 'false', scope: 'global', category: 'Infrastructure', isDynamic: true, description: "Back up strata's own databases, configuration and certificates." }),
  s({ name: 'nas.infra.backup.location', type: 'string', defaultValue: '', scope: 'global', category: 'Infrastructure', isDynamic: true, description: 'Absolute path where infrastructure backups are written.' }),
  s({ name: 'nas.infra.backup.retention', type: 'integer', defaultValue: '7', scope: 'global', category: 'Infrastructure', min: 1, max: 3650, isDynamic: true, description: 'Infrastructure backup sets to keep.' }),
  s({ name: 'nas.infra.backup.include.database', type: 'boolean', defaultValue: 'false', scope: 'global', category: 'Infrastructure', isDynamic: true, description: 'Include the databases in infrastructure backups.' }),
];

const byName = new Map(SETTINGS.map((d) => [d.name, d]));

export function findSetting(name: string): SettingDefinition | undefined {
  return byName.get(name);
}

/** Checks a value for a setting and returns its canonical text; throws a DomainError naming `value`. */
export function normalizeSettingValue(def: SettingDefinition, raw: string): string {
  const value = raw.trim();
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(raw)) throw invalid(`${def.name} must not contain control characters`, 'value');
  switch (def.type) {
    case 'boolean': {
      const v = value.toLowerCase();
      if (v !== 'true' && v !== 'false') throw invalid(`${def.name} takes true or false`, 'value');
      return v;
    }
    case 'integer':
    case 'number': {
      const pattern = def.type === 'integer' ? /^-?\d{1,15}$/ : /^-?\d{1,15}(\.\d{1,9})?$/;
      if (!pattern.test(value)) throw invalid(`${def.name} takes ${def.type === 'integer' ? 'a whole number' : 'a number'}`, 'value');
      const n = Number(value);
      if ((def.min !== undefined && n < def.min) || (def.max !== undefined && n > def.max)) {
        throw invalid(`${def.name} must be between ${def.min} and ${def.max}`, 'value');
      }
      return def.type === 'integer' ? String(n) : value;
    }
    case 'string': {
      if (value.length > 1024) throw invalid(`${def.name} takes at most 1024 characters`, 'value');
      if (def.name === 'nas.infra.backup.location' && value !== '' && !value.startsWith('/')) {
        throw invalid(`${def.name} must be an absolute path`, 'value');
      }
      return def.secret ? raw : value;
    }
  }
}
