import 'reflect-metadata';
import { SecretBox } from '@strata/application';
import { ConfigError, createLogger, loadAgentConfig, loadConfig, redactUrl, StrataConfig } from '@strata/config';
import { createHostWorker, HostAgent, redisHostLiveness, reportsQueue } from '../../host-agent/src/host-agent';
import { BackupExecutor } from '../../host-agent/src/backup-executor';
import { hostKeyCredentials, RepositoryMounter } from '../../host-agent/src/repository-mounter';
import { DieWithParentRunner, ExecaProcessRunner, MountDriver, QemuImgDriver } from '@strata/hypervisor';
import { CompressionExecutor } from '../../host-agent/src/compression-executor';
import { createCompressionWorker } from '../../host-agent/src/compression-worker';
import { ConsolidationExecutor } from '../../host-agent/src/consolidation-executor';
import { RestoreExecutor, RestoreMountHolds } from '../../host-agent/src/restore-executor';
import { RemovalExecutor } from '../../host-agent/src/removal-executor';
import { hostIdFor } from '@strata/application';
import { LibvirtHostHypervisor } from '../../host-agent/src/libvirt-host-hypervisor';
import { runMigrations } from '@strata/read-models';
import { startApiServer } from '../../api/src/api-server';
import { createProjector, startDispatcherAndWorkers, Stoppable } from '../../management/src/management-plane';
import { createApiKeys } from './keys';
import { checkRepository } from './repository-check';
import { onShutdown, openRuntime, openSecrets } from './runtime';

const USAGE = `strata: event-sourced incremental backups of KVM virtual machines

usage:
  strata migrate                      create or upgrade the database schema (and the master key file)
  strata api [--only-api]             serve the API; by default also runs the projector, the dispatcher
                                      and the management workers in this process
  strata projector [--rebuild] [--exit-when-caught-up]
                                      keep the read models current; --rebuild replays every event from zero
  strata dispatcher                   turn events into jobs and run the management workers
  strata agent                        the host agent of a KVM host (STRATA_AGENT_* variables)
  strata keys create --role Admin|User --name NAME [--json]
                                      create an API user and print its keys
  strata keys host --out FILE         write the host key that agents need for repository credentials
  strata repository check --id ID [--path DIR] [--json]
                                      list files on a repository that no backup references and backups
                                      whose files are missing (changes nothing; --path: where it is mounted)

configuration: environment variables STRATA_* (see README.md)`;

class UsageError extends Error {}

function flag(args: string[], name: string): boolean {
  const i = args.indexOf(name);
  if (i >= 0) args.splice(i, 1);
  return i >= 0;
}

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const value = args[i + 1];
  if (value === undefined || value.startsWith('--')) throw new UsageError(`${name} needs a value`);
  args.splice(i, 2);
  return value;
}

function noMoreArgs(args: string[]): void {
  if (args.length > 0) throw new UsageError(`unexpected argument "${args[0]}"`);
}

async function migrate(config: StrataConfig): Promise<void> {
  const logger = createLogger('migrate', config.logLevel);
  if (SecretBox.ensureKeyFile(config.masterKeyFile)) logger.log(`created master key ${config.masterKeyFile} (mode 0600); back it up: stored secrets cannot be read without it`);
  const applied = await runMigrations(config.databaseUrl);
  logger.log(applied.length ? `applied ${applied.join(', ')}` : 'schema is up to date');
  const rt = await openRuntime(config, 'strata-migrate');
  try {
    await openSecrets(config, rt.db);
  } finally {
    await rt.close();
  }
}

async function serve(config: StrataConfig, args: string[]): Promise<void> {
  const onlyApi = flag(args, '--only-api');
  noMoreArgs(args);
  const logger = createLogger('strata', config.logLevel);
  const rt = await openRuntime(config, 'strata-api');
  const secrets = await openSecrets(config, rt.db);
  const parts: Stoppable[] = [];
  if (!onlyApi) {
    const projector = createProjector(rt);
    // Not awaited: while another instance's projector holds the lock this one stands by, and this
    // instance's API and dispatcher must serve meanwhile (several all-in-one instances share the work).
    projector.start().catch((error: Error) => {
      logger.error(`projector: ${redactUrl(error.message)}`);
      process.exit(1);
    });
    parts.push(projector);
    parts.push(await startDispatcherAndWorkers({ ...rt, secrets }));
  }
  const api = await startApiServer({ ...rt, secrets });
  logger.log(onlyApi ? 'API running (projector and dispatcher run elsewhere)' : 'management plane running: API, projector, dispatcher, management workers');
  onShutdown(logger, async () => {
    await api.stop();
    for (const part of parts.reverse()) await part.stop();
    await rt.close();
  });
}

async function projector(config: StrataConfig, args: string[]): Promise<void> {
  const rebuild = flag(args, '--rebuild');
  const once = flag(args, '--exit-when-caught-up');
  noMoreArgs(args);
  const logger = createLogger('projector', config.logLevel);
  const rt = await openRuntime(config, 'strata-projector');
  const p = createProjector(rt);
  if (rebuild) await p.reset();
  if (once) {
    const started = Date.now();
    const n = await p.runUntilCaughtUp();
    logger.log(`applied ${n} events in ${((Date.now() - started) / 1000).toFixed(1)} s; caught up`);
    await rt.close();
    return;
  }
  await p.start();
  onShutdown(logger, async () => {
    await p.stop();
    await rt.close();
  });
}

async function dispatcher(config: StrataConfig, args: string[]): Promise<void> {
  noMoreArgs(args);
  const logger = createLogger('dispatcher', config.logLevel);
  const rt = await openRuntime(config, 'strata-dispatcher');
  const part = await startDispatcherAndWorkers({ ...rt, secrets: await openSecrets(config, rt.db) });
  onShutdown(logger, async () => {
    await part.stop();
    await rt.close();
  });
}

/** The agent reads only its own variables: it never needs (nor gets) database credentials. */
async function agent(args: string[]): Promise<void> {
  noMoreArgs(args);
  const config = loadAgentConfig(process.env);
  const logger = createLogger('agent', config.logLevel);
  const reports = reportsQueue(config);
  const hypervisor = new LibvirtHostHypervisor(config.libvirtUri, config.sharedLibvirt ? config.hostName : null);
  const hostAgent = new HostAgent(config, hypervisor, reports, logger, redisHostLiveness(reports, config, hostIdFor(config.hostName)));
  await hostAgent.start();
  const mounter = new RepositoryMounter(new MountDriver(new ExecaProcessRunner()), config.mountRoot, hostKeyCredentials(config.keyFile), logger);
  // Before any job: repository mounts must reach the VMs started from now on (see prepare).
  await mounter.prepare().catch((error: Error) => logger.warn(`mount root ${config.mountRoot}: ${error.message}; NFS, CIFS and CephFS repositories may not reach running VMs`));
  const executor = new BackupExecutor(hypervisor.virsh, hypervisor.qemuImg, (r) => hostAgent.send(r), config.hostName, logger, mounter);
  // Quick-restored VMs keep their repository mounted until their consolidation is done.
  const holds = new RestoreMountHolds();
  const restores = new RestoreExecutor(hypervisor.virsh, hypervisor.qemuImg, (r) => hostAgent.send(r), () => hostAgent.reportNow(), logger, { mounter, holds, hostName: config.hostName });
  const consolidations = new ConsolidationExecutor(hypervisor.virsh, hypervisor.qemuImg, (r) => hostAgent.send(r), logger, mounter, holds);
  const removals = new RemovalExecutor(hypervisor.virsh, hypervisor.qemuImg, (r) => hostAgent.send(r), logger, mounter);
  const worker = createHostWorker(
    config,
    hostIdFor(config.hostName),
    {
      backup: (data) => executor.run(data),
      restore: (data) => restores.run(data),
      consolidate: (data, job) => consolidations.run(data, job.attemptsMade + 1 >= (job.opts.attempts ?? 1)),
      removeBackup: (data) => removals.run(data),
      forgetDomain: (data) => restores.forget(data),
    },
    logger,
  );
  // Compression has its own queue; its qemu-img processes die with the agent (never orphaned, never uncounted).
  const compression = new CompressionExecutor(new QemuImgDriver(new DieWithParentRunner(new ExecaProcessRunner())), (r) => hostAgent.send(r), config.hostName, logger, mounter);
  const compressionWorker = createCompressionWorker(config, hostIdFor(config.hostName), compression, logger);
  onShutdown(logger, async () => {
    // Not waiting for compressions (hours): their qemu-img dies with us and BullMQ hands the attempt out again.
    await compressionWorker.close(true);
    await worker.close();
    await hostAgent.stop();
    await reports.close();
  });
}

/** Writes the host key (derived from the master key) that agents need to open repository credentials. */
async function hostKey(config: StrataConfig, args: string[]): Promise<void> {
  const out = option(args, '--out');
  noMoreArgs(args);
  if (!out) throw new UsageError('usage: strata keys host --out FILE');
  const rt = await openRuntime(config, 'strata-keys');
  try {
    // Checked against the database: a host key from another master key would open nothing.
    const secrets = await openSecrets(config, rt.db);
    try {
      secrets.hostKey().writeKeyFile(out);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new UsageError(`${out} exists already; remove it first`);
      throw error;
    }
    process.stdout.write(`wrote the host key to ${out} (mode 0600); copy it to every KVM host as STRATA_AGENT_KEY_FILE (default /var/lib/strata/host.key)\n`);
  } finally {
    await rt.close();
  }
}

async function repository(config: StrataConfig, args: string[]): Promise<void> {
  if (args.shift() !== 'check') throw new UsageError('usage: strata repository check --id ID [--path DIR] [--json]');
  const id = option(args, '--id');
  const path = option(args, '--path');
  const json = flag(args, '--json');
  noMoreArgs(args);
  if (!id) throw new UsageError('--id is required (listBackupRepositories names them)');
  const rt = await openRuntime(config, 'strata-repository-check');
  try {
    const r = await checkRepository(rt.db, id, path);
    if (json) process.stdout.write(JSON.stringify(r) + '\n');
    else {
      process.stdout.write(`repository ${r.repositoryId} at ${r.root}: ${r.backups} backup(s), ${r.usedBytes} bytes\n`);
      process.stdout.write(`unreferenced files: ${r.unreferenced.length}\n${r.unreferenced.map((f) => `  ${f}\n`).join('')}`);
      process.stdout.write(`backups with missing files: ${r.missing.length}\n${r.missing.map((m) => `  ${m.backupId}: ${m.files.join(', ')}\n`).join('')}`);
    }
    if (r.unreferenced.length || r.missing.length) process.exitCode = 1;
  } finally {
    await rt.close();
  }
}

async function keys(config: StrataConfig, args: string[]): Promise<void> {
  if (args[0] === 'host') {
    args.shift();
    return hostKey(config, args);
  }
  if (args.shift() !== 'create') throw new UsageError('usage: strata keys create --role Admin|User --name NAME [--json] | strata keys host --out FILE');
  const role = option(args, '--role');
  const name = option(args, '--name');
  const json = flag(args, '--json');
  noMoreArgs(args);
  if (!role) throw new UsageError('--role is required (Admin or User)');
  if (role !== 'Admin' && role !== 'User') throw new UsageError(`--role must be Admin or User, got "${role}"`);
  if (!name) throw new UsageError('--name is required');
  const rt = await openRuntime(config, 'strata-keys');
  try {
    const secrets = await openSecrets(config, rt.db);
    const { keys: created, usable } = await createApiKeys(rt, secrets, role, name, new Date());
    if (!usable) process.stderr.write('strata: note: no projector has applied the new user yet; the keys work once `strata api` or `strata projector` runs\n');
    process.stdout.write(json ? JSON.stringify({ apikey: created.apikey, secretkey: created.secretkey, userid: created.userid, role: created.role, name: created.name }) + '\n' : `user ${created.name} (${created.role}) ${created.userid}\napikey    ${created.apikey}\nsecretkey ${created.secretkey}\n`);
  } finally {
    await rt.close();
  }
}

async function main(argv: string[]): Promise<void> {
  const args = [...argv];
  const command = args.shift();
  if (!command || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(USAGE + '\n');
    return;
  }
  if (command === 'agent') return agent(args);
  const config = loadConfig(process.env);
  switch (command) {
    case 'migrate':
      noMoreArgs(args);
      return migrate(config);
    case 'api':
      return serve(config, args);
    case 'projector':
      return projector(config, args);
    case 'dispatcher':
      return dispatcher(config, args);
    case 'keys':
      return keys(config, args);
    case 'repository':
      return repository(config, args);
    default:
      throw new UsageError(`unknown command "${command}" (strata help lists them)`);
  }
}

main(process.argv.slice(2)).catch((error: Error) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`strata: configuration error: ${error.message}\n`);
    process.exit(2);
  }
  if (error instanceof UsageError) {
    process.stderr.write(`strata: ${error.message}\n`);
    process.exit(2);
  }
  // One line, no stack: the message of a connection error can contain the URL, so redact it.
  process.stderr.write(`strata: ${redactUrl(error.message)}\n`);
  if (process.env.STRATA_LOG_LEVEL === 'debug') process.stderr.write(`${error.stack}\n`);
  process.exit(1);
});
