import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiClient } from './api-client';
import { createTestDomain, ExpectedDisks, TestDiskSpec, TestDomain } from './libvirt';
import { RunningPlane, startManagementPlane } from './management-plane';
import { runStrata, startStrata, StrataProcess, until } from './strata-process';

/** The answer inside the command's envelope; anything but 200 throws with the whole body. */
export function okCaller(api: () => ApiClient) {
  return async (command: string, params: Record<string, string>): Promise<Record<string, unknown>> => {
    const r = await api().call(command, params);
    if (r.status !== 200) throw new Error(`${command}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body[`${command.toLowerCase()}response`] as Record<string, unknown>;
  };
}

/** The environment of a test agent: only Redis and its identity, with a 1 s heartbeat. */
export function agentEnv(plane: RunningPlane, hostName: string, zoneName: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    STRATA_AGENT_HOST_NAME: hostName,
    STRATA_AGENT_ZONE: zoneName,
    STRATA_REDIS_URL: plane.env.STRATA_REDIS_URL,
    STRATA_QUEUE_PREFIX: plane.env.STRATA_QUEUE_PREFIX,
    STRATA_AGENT_HEARTBEAT_SECONDS: '1',
    ...extra,
  };
}

export interface BackupCatalog {
  zoneId: string;
  repoDir: string;
  offeringId: string;
}

/** A zone, a local repository in a temp dir, and a native offering imported into the zone. */
export async function createBackupCatalog(api: ApiClient, zoneName: string, chainSize?: number, nativeParams: Record<string, string> = {}): Promise<BackupCatalog> {
  const ok = okCaller(() => api);
  const zone = (await ok('createZone', { name: zoneName })).zone as { id: string };
  const repoDir = await mkdtemp(join(tmpdir(), 'strata-repo-'));
  await ok('addBackupRepository', { name: 'local', type: 'local', address: repoDir, zoneid: zone.id });
  const native = (await ok('createNativeBackupOffering', { name: 'gold', ...(chainSize !== undefined && { backupchainsize: String(chainSize) }), ...nativeParams })).nativebackupoffering as { id: string };
  const imported = await ok('importBackupOffering', { name: 'gold', description: 'gold', zoneid: zone.id, externalid: native.id, allowuserdrivenbackups: 'true' });
  const offering = (await api.waitForJob(imported.jobid as string)).jobresult.backupoffering as { id: string };
  return { zoneId: zone.id, repoDir, offeringId: offering.id };
}

/** Waits until the agent has reported the domain, assigns it to the offering; returns volume ids by device. */
export async function assignWhenListed(api: ApiClient, vmId: string, offeringId: string, agentOutput: () => string): Promise<Record<string, string>> {
  const ok = okCaller(() => api);
  const vm = await until(
    async () => ((await ok('listVirtualMachines', { id: vmId })).virtualmachine as { volumes: { id: string; device: string }[] }[] | undefined)?.[0],
    30_000,
    `the VM to be listed (agent: ${agentOutput()})`,
    200,
  );
  const assigned = await ok('assignVirtualMachineToBackupOffering', { virtualmachineid: vmId, backupofferingid: offeringId });
  const job = await api.waitForJob(assigned.jobid as string);
  if (job.jobstatus !== 1) throw new Error(`assignVirtualMachineToBackupOffering failed: ${JSON.stringify(job.jobresult)}`);
  return Object.fromEntries(vm.volumes.map((v) => [v.device, v.id]));
}

/** createBackup needs the host Up: after an agent (or libvirtd) restart, wait for its heartbeat. */
export async function waitHostUp(api: ApiClient, hostName: string): Promise<void> {
  const ok = okCaller(() => api);
  const hosts = async () => ((await ok('listHosts', {})).host as { name: string; state: string }[] | undefined) ?? [];
  await until(async () => (await hosts()).some((h) => h.name === hostName && h.state === 'Up'), 30_000, `host ${hostName} to be Up (was ${(await hosts()).find((h) => h.name === hostName)?.state})`, 200);
}

/** A backup as listBackups answers it (the fields the suites check). */
export interface BackupRow {
  id: string;
  /** The label it was taken under, when it was given one. */
  name?: string;
  type: string;
  status: string;
  chainid: string;
  parentid?: string;
  chainposition: number;
  fullreason?: string;
  failure?: string;
}

/** What a backup suite works with; the fields are set in its beforeAll. */
export interface BackupRig {
  readonly hostName: string;
  readonly zoneName: string;
  readonly ok: ReturnType<typeof okCaller>;
  plane: RunningPlane;
  api: ApiClient;
  catalog: BackupCatalog;
  agent: StrataProcess;
  domain: TestDomain;
  expected: ExpectedDisks;
  /** Volume ids by device. */
  volumeIds: Record<string, string>;
}

export interface BackupRigOptions {
  zoneName: string;
  /** The disks of the (running) test domain. */
  disks: TestDiskSpec[];
  /** The zone, repository and offering; default createBackupCatalog with a chain size of 8. */
  catalog?: (api: ApiClient, zoneName: string) => Promise<BackupCatalog>;
  /** Changes the defined domain before its first start (its disk cache, ...); default none. */
  prepareDomain?: (domain: TestDomain) => Promise<void>;
}

/** Starts a new agent for the rig (the old one stopped), with more environment (a failpoint, ...). */
export function startAgent(rig: BackupRig, extra: Record<string, string> = {}): StrataProcess {
  return (rig.agent = startStrata(['agent'], agentEnv(rig.plane, rig.hostName, rig.zoneName, extra)));
}

/** Stops the rig's agent; one that does not exit within 10 s of `signal` (held in a failpoint) is killed. */
export async function stopAgent(rig: BackupRig, signal: NodeJS.Signals): Promise<void> {
  const agent = rig.agent;
  agent.child.kill(signal);
  const timer = setTimeout(() => agent.child.kill('SIGKILL'), 10_000);
  await agent.exited;
  clearTimeout(timer);
}

/**
 * A management plane with a backup catalog, an agent, and a running test domain with its expected disks,
 * assigned to the offering: beforeAll sets it up, afterAll stops whatever was started, even when the set-up
 * failed half-way. Call it after useLibvirtCleanup().
 */
export function useBackupRig(opts: BackupRigOptions): BackupRig {
  const rig = { hostName: `strata-e2e-${randomBytes(3).toString('hex')}`, zoneName: opts.zoneName, ok: okCaller(() => rig.api) } as BackupRig;
  beforeAll(async () => {
    rig.plane = await startManagementPlane();
    rig.api = new ApiClient(new URL(rig.plane.endpoint).origin, rig.plane.admin.apikey, rig.plane.admin.secretkey);
    rig.catalog = await (opts.catalog ?? ((api, zoneName) => createBackupCatalog(api, zoneName, 8)))(rig.api, opts.zoneName);
    startAgent(rig);
    rig.domain = await createTestDomain({ disks: opts.disks, running: !opts.prepareDomain });
    if (opts.prepareDomain) {
      await opts.prepareDomain(rig.domain);
      await rig.domain.start();
    }
    rig.expected = await ExpectedDisks.forDomain(rig.domain);
    rig.volumeIds = await assignWhenListed(rig.api, rig.domain.uuid, rig.catalog.offeringId, () => rig.agent.output());
  });
  afterAll(async () => {
    if (rig.agent) await stopAgent(rig, 'SIGTERM');
    await rig.domain?.destroy();
    await rig.plane?.stop();
  });
  return rig;
}

type StoredBackup = Pick<BackupRow, 'id' | 'chainid'>;

/** One backup as listBackups answers it. */
export async function getBackup<B = BackupRow>(rig: BackupRig, id: string): Promise<B> {
  return ((await rig.ok('listBackups', { id })).backup as B[])[0];
}

/** The backups of the rig's VM as listBackups answers them (Expunged ones are not listed). */
export async function listVmBackups<B = BackupRow>(rig: BackupRig): Promise<B[]> {
  return ((await rig.ok('listBackups', { virtualmachineid: rig.domain.uuid })).backup as B[] | undefined) ?? [];
}

/** The directory of a backup in the rig's repository. */
export const backupDir = (rig: BackupRig, b: StoredBackup): string => join(rig.catalog.repoDir, rig.domain.uuid, b.chainid, b.id);

/** The backup's top file of a disk: read through its backing chain, the whole disk as backed up. */
export const topFile = (rig: BackupRig, b: StoredBackup, target: string): string => join(backupDir(rig, b), `${rig.volumeIds[target]}.qcow2`);

export async function readManifest(rig: BackupRig, b: StoredBackup): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(join(backupDir(rig, b), 'manifest.json'), 'utf8')) as Record<string, unknown>;
}

/** Each disk's top file (default: every disk of the domain) equals the expected image at `label`. */
export async function expectBackupContent(rig: BackupRig, b: StoredBackup, label: string, targets: readonly string[] = rig.domain.disks.map((d) => d.target)): Promise<void> {
  for (const target of targets) {
    const result = await rig.expected.get(target).compareWith(topFile(rig, b, target), label, { format: 'qcow2' });
    expect({ backup: label, target, ...result }).toMatchObject({ equal: true });
  }
}

export interface TakeBackupOptions {
  /** More createBackup parameters (isolated, ...). */
  params?: Record<string, string>;
  /** The disks whose content is compared; default every disk of the domain, [] none. */
  targets?: readonly string[];
  /** How the backup is requested; default createBackup, which must answer 200. */
  create?: (api: ApiClient, params: Record<string, string>) => Promise<{ id: string; jobid: string }>;
}

/**
 * Waits for a requested backup's async job (a failure throws with the agent's output), then the backup must
 * be BackedUp and its content equal the expected disks at `label`. The job is returned for its progress.
 */
export async function completeBackup<B extends StoredBackup & { status: string } = BackupRow>(
  rig: BackupRig,
  started: { id: string; jobid: string },
  label: string,
  targets?: readonly string[],
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
): Promise<{ backup: B; job: Record<string, any> }> {
  const job = await rig.api.waitForJob(started.jobid, 120_000);
  if (job.jobstatus !== 1) throw new Error(`backup ${label} failed: ${JSON.stringify(job.jobresult)} (agent: ${rig.agent.output().slice(-3000)})`);
  const backup = await getBackup<B>(rig, started.id);
  expect(backup.status).toBe('BackedUp');
  await expectBackupContent(rig, backup, label, targets);
  return { backup, job };
}

/** Snapshots the expected disks as `label`, backs the rig's VM up under that name, and completes it (above). */
export async function takeBackup<B extends StoredBackup & { status: string } = BackupRow>(rig: BackupRig, label: string, opts: TakeBackupOptions = {}): Promise<B> {
  await rig.expected.snapshot(label);
  const params = { virtualmachineid: rig.domain.uuid, name: label, ...opts.params };
  const started = opts.create ? await opts.create(rig.api, params) : ((await rig.ok('createBackup', params)) as { id: string; jobid: string });
  return (await completeBackup<B>(rig, started, label, opts.targets)).backup;
}

/**
 * After `step`: every listed backup is BackedUp and, read through its top files, equals the disks at its
 * name (so each must be taken under the label of its snapshot), and `strata repository check` of `repoId`
 * finds exactly their files.
 */
export async function expectRepositoryExact(rig: BackupRig, repoId: string, step: string): Promise<void> {
  const backups = await listVmBackups(rig);
  for (const b of backups) {
    expect({ step, backup: b.name, status: b.status }).toEqual({ step, backup: b.name, status: 'BackedUp' });
    for (const target of rig.domain.disks.map((d) => d.target)) {
      const result = await rig.expected.get(target).compareWith(topFile(rig, b, target), b.name!, { format: 'qcow2' });
      expect({ step, backup: b.name, target, ...result }).toMatchObject({ equal: true });
    }
  }
  const check = await runStrata(['repository', 'check', '--id', repoId, '--json'], rig.plane.env);
  const report = JSON.parse(check.stdout || '{}') as { unreferenced: string[]; missing: unknown[]; backups: number };
  expect({ step, unreferenced: report.unreferenced, missing: report.missing, backups: report.backups }).toEqual({ step, unreferenced: [], missing: [], backups: backups.length });
}
