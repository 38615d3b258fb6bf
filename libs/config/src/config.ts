/**
 * strata's configuration, read once from the environment at start-up. A bad value fails fast with one
 * line that names the variable; nothing else in strata reads process.env.
 */
export type EventStoreKind = 'postgres' | 'esdb';

export interface StrataConfig {
  databaseUrl: string;
  redisUrl: string;
  eventStore: EventStoreKind;
  esdbUrl: string | null;
  apiHost: string;
  apiPort: number;
  /** File holding the 32-byte key that encrypts secrets (API secret keys, passphrases, credentials). */
  masterKeyFile: string;
  /** Prefix of every BullMQ queue; lets several installations (or test runs) share one Redis. */
  queuePrefix: string;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export interface ConfigVariable {
  name: string;
  default: string;
  description: string;
}

/** Documented in the README's configuration table; keep the two in step. */
export const CONFIG_VARIABLES: ConfigVariable[] = [
  { name: 'STRATA_DATABASE_URL', default: 'postgres://postgres@127.0.0.1:5432/strata', description: 'PostgreSQL for read models and (by default) the event store' },
  { name: 'STRATA_REDIS_URL', default: 'redis://127.0.0.1:6379', description: 'Redis for the BullMQ job queues' },
  { name: 'STRATA_EVENT_STORE', default: 'postgres', description: '`postgres` or `esdb`' },
  { name: 'STRATA_ESDB_URL', default: '', description: 'EventStoreDB connection string, required when STRATA_EVENT_STORE=esdb' },
  { name: 'STRATA_API_HOST', default: '0.0.0.0', description: 'address the API listens on' },
  { name: 'STRATA_API_PORT', default: '8080', description: 'port the API listens on (0: any free port, which the log line "listening on" names)' },
  { name: 'STRATA_MASTER_KEY_FILE', default: '/var/lib/strata/master.key', description: 'key that encrypts stored secrets; `strata migrate` creates it (mode 0600) when missing' },
  { name: 'STRATA_QUEUE_PREFIX', default: 'strata', description: 'prefix of the BullMQ queues in Redis' },
  { name: 'STRATA_LOG_LEVEL', default: 'info', description: '`debug`, `info`, `warn` or `error`' },
];

const defaults = Object.fromEntries(CONFIG_VARIABLES.map((v) => [v.name, v.default]));

/** A value quoted for an error message, control characters escaped so that the message stays on one line. */
const shown = (value: string) => JSON.stringify(value);

function get(env: NodeJS.ProcessEnv, name: string): string {
  const value = env[name];
  return value === undefined || value === '' ? defaults[name] : value;
}

function url(env: NodeJS.ProcessEnv, name: string, protocols: string[]): string {
  const raw = get(env, name);
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(`${name} must be a URL (${protocols.join(' or ')}), got ${shown(redactUrl(raw))}`);
  }
  if (!protocols.includes(parsed.protocol.replace(/:$/, ''))) {
    throw new ConfigError(`${name} must use ${protocols.join(' or ')}, got ${shown(parsed.protocol.replace(/:$/, ''))}`);
  }
  return raw;
}

function oneOf<T extends string>(env: NodeJS.ProcessEnv, name: string, values: readonly T[]): T {
  const raw = get(env, name);
  if (!(values as readonly string[]).includes(raw)) {
    throw new ConfigError(`${name} must be one of ${values.join(', ')}, got ${shown(raw)}`);
  }
  return raw as T;
}

function port(env: NodeJS.ProcessEnv, name: string): number {
  const raw = get(env, name);
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n > 65535) throw new ConfigError(`${name} must be a port number 0-65535, got ${shown(raw)}`);
  return n;
}

/**
 * Hides the password of a connection URL so that an error message never prints it. A password may hold
 * an unencoded "@": everything up to the last "@" of the same word is hidden.
 */
export function redactUrl(raw: string): string {
  return raw.replace(/(\/\/[^:/@\s]*:)[^@]*@(?:[^@\s]*@)*/g, '$1****@');
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): StrataConfig {
  const eventStore = oneOf(env, 'STRATA_EVENT_STORE', ['postgres', 'esdb'] as const);
  const esdbRaw = get(env, 'STRATA_ESDB_URL');
  if (eventStore === 'esdb' && !esdbRaw) throw new ConfigError('STRATA_ESDB_URL is required when STRATA_EVENT_STORE=esdb');
  const queuePrefix = get(env, 'STRATA_QUEUE_PREFIX');
  if (!/^[a-zA-Z0-9_.]{1,64}$/.test(queuePrefix)) {
    throw new ConfigError(`STRATA_QUEUE_PREFIX must be 1-64 letters, digits, "_" or ".", got ${shown(queuePrefix)}`);
  }
  const masterKeyFile = get(env, 'STRATA_MASTER_KEY_FILE');
  if (!masterKeyFile.startsWith('/')) throw new ConfigError(`STRATA_MASTER_KEY_FILE must be an absolute path, got ${shown(masterKeyFile)}`);
  return {
    databaseUrl: url(env, 'STRATA_DATABASE_URL', ['postgres', 'postgresql']),
    redisUrl: url(env, 'STRATA_REDIS_URL', ['redis', 'rediss']),
    eventStore,
    esdbUrl: esdbRaw ? url(env, 'STRATA_ESDB_URL', ['esdb', 'esdb+discover']) : null,
    apiHost: get(env, 'STRATA_API_HOST'),
    apiPort: port(env, 'STRATA_API_PORT'),
    masterKeyFile,
    queuePrefix,
    logLevel: oneOf(env, 'STRATA_LOG_LEVEL', ['debug', 'info', 'warn', 'error'] as const),
  };
}
