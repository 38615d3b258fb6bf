import { hostname } from 'node:os';
import { ConfigError, redactUrl } from './config';

/** The host agent's configuration: Redis and libvirt, never database credentials. */
export interface AgentConfig {
  hostName: string;
  zoneName: string;
  libvirtUri: string;
  redisUrl: string;
  mountRoot: string;
  /** The host key (see `strata keys host`) that opens repository credentials; read only when a job has some. */
  keyFile: string;
  queuePrefix: string;
  heartbeatSeconds: number;
  /** Other agents use the same libvirt: report only the domains placed on this host (see withPlacement). */
  sharedLibvirt: boolean;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
}

export const AGENT_CONFIG_VARIABLES = [
  { name: 'STRATA_AGENT_HOST_NAME', default: '(the host name)', description: 'name the host registers under (its id derives from it)' },
  { name: 'STRATA_AGENT_ZONE', default: '(required)', description: 'name of the zone the host belongs to' },
  { name: 'STRATA_LIBVIRT_URI', default: 'qemu:///system', description: 'libvirt connection' },
  { name: 'STRATA_REDIS_URL', default: 'redis://127.0.0.1:6379', description: 'the management plane\'s Redis' },
  { name: 'STRATA_AGENT_MOUNT_ROOT', default: '/var/lib/strata/mounts', description: 'where repositories are mounted' },
  { name: 'STRATA_AGENT_KEY_FILE', default: '/var/lib/strata/host.key', description: 'the host key that opens repository credentials (`strata keys host`)' },
  { name: 'STRATA_QUEUE_PREFIX', default: 'strata', description: 'prefix of the BullMQ queues (as on the management plane)' },
  { name: 'STRATA_AGENT_HEARTBEAT_SECONDS', default: '10', description: 'seconds between heartbeats and domain reports' },
  { name: 'STRATA_AGENT_SHARED_LIBVIRT', default: 'false', description: 'true when other agents use the same libvirt (test rigs): report only domains placed on this host' },
  { name: 'STRATA_LOG_LEVEL', default: 'info', description: '`debug`, `info`, `warn` or `error`' },
];

export function loadAgentConfig(env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const get = (name: string, fallback: string) => (env[name] === undefined || env[name] === '' ? fallback : env[name]!);
  const zoneName = get('STRATA_AGENT_ZONE', '');
  if (!zoneName) throw new ConfigError('STRATA_AGENT_ZONE is required: the name of the zone this host belongs to');
  const hostName = get('STRATA_AGENT_HOST_NAME', hostname());
  if (!/^[a-zA-Z0-9][a-zA-Z0-9._-]{0,252}$/.test(hostName)) throw new ConfigError(`STRATA_AGENT_HOST_NAME must be a host name, got ${JSON.stringify(hostName)}`);
  const redisUrl = get('STRATA_REDIS_URL', 'redis://127.0.0.1:6379');
  if (!/^rediss?:\/\//.test(redisUrl)) throw new ConfigError(`STRATA_REDIS_URL must be a redis:// URL, got ${JSON.stringify(redactUrl(redisUrl))}`);
  const libvirtUri = get('STRATA_LIBVIRT_URI', 'qemu:///system');
  if (!/^[a-z+]+:\/\/[^\s]*$/.test(libvirtUri)) throw new ConfigError(`STRATA_LIBVIRT_URI must be a libvirt URI such as qemu:///system, got ${JSON.stringify(libvirtUri)}`);
  const mountRoot = get('STRATA_AGENT_MOUNT_ROOT', '/var/lib/strata/mounts');
  if (!mountRoot.startsWith('/')) throw new ConfigError(`STRATA_AGENT_MOUNT_ROOT must be an absolute path, got ${JSON.stringify(mountRoot)}`);
  const keyFile = get('STRATA_AGENT_KEY_FILE', '/var/lib/strata/host.key');
  if (!keyFile.startsWith('/')) throw new ConfigError(`STRATA_AGENT_KEY_FILE must be an absolute path, got ${JSON.stringify(keyFile)}`);
  const queuePrefix = get('STRATA_QUEUE_PREFIX', 'strata');
  if (!/^[a-zA-Z0-9_.]{1,64}$/.test(queuePrefix)) throw new ConfigError(`STRATA_QUEUE_PREFIX must be 1-64 letters, digits, "_" or ".", got ${JSON.stringify(queuePrefix)}`);
  const beat = get('STRATA_AGENT_HEARTBEAT_SECONDS', '10');
  if (!/^\d{1,4}$/.test(beat) || Number(beat) < 1) throw new ConfigError(`STRATA_AGENT_HEARTBEAT_SECONDS must be a whole number of seconds, got ${JSON.stringify(beat)}`);
  const shared = get('STRATA_AGENT_SHARED_LIBVIRT', 'false');
  if (shared !== 'true' && shared !== 'false') throw new ConfigError(`STRATA_AGENT_SHARED_LIBVIRT must be true or false, got ${JSON.stringify(shared)}`);
  const logLevel = get('STRATA_LOG_LEVEL', 'info');
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) throw new ConfigError(`STRATA_LOG_LEVEL must be one of debug, info, warn, error, got ${JSON.stringify(logLevel)}`);
  return { hostName, zoneName, libvirtUri, redisUrl, mountRoot, keyFile, queuePrefix, heartbeatSeconds: Number(beat), sharedLibvirt: shared === 'true', logLevel: logLevel as AgentConfig['logLevel'] };
}
