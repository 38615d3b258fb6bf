import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { ApiClient } from './api-client';
import { okCaller } from './backup-fixture';
import { until } from './strata-process';

export interface CompressionJob {
  id: string;
  backupid: string;
  virtualmachineid: string;
  hostid?: string;
  zoneid: string;
  attempts: number;
  type: 'Starting' | 'Finalizing';
  startdate?: string;
  scheduleddate: string;
  removed?: string;
  status: string;
  lasterror?: string;
}

export interface CompressedBackup {
  id: string;
  type: string;
  status: string;
  chainid: string;
  parentid?: string;
  size: number;
  uncompressedsize: number;
  compressionstatus: string;
  hostid: string;
  volumes: { id: string; device: string; storedsize?: number }[];
}

export interface CompressCatalog {
  zoneId: string;
  repoDir: string;
  offeringId: string;
}

/** A zone, a local repository (a temp dir unless given) and a `compress=true` native offering imported into it. */
export async function createCompressCatalog(api: ApiClient, zoneName: string, opts: { repoDir?: string; library?: 'zstd' | 'zlib'; chainSize?: number } = {}): Promise<CompressCatalog> {
  const ok = okCaller(() => api);
  const zone = (await ok('createZone', { name: zoneName })).zone as { id: string };
  const repoDir = opts.repoDir ?? (await mkdtemp(join(tmpdir(), 'strata-repo-')));
  await ok('addBackupRepository', { name: 'local', type: 'local', address: repoDir, zoneid: zone.id });
  const native = (
    await ok('createNativeBackupOffering', {
      name: 'compressed',
      compress: 'true',
      compressionlibrary: opts.library ?? 'zstd',
      ...(opts.chainSize !== undefined && { backupchainsize: String(opts.chainSize) }),
    })
  ).nativebackupoffering as { id: string };
  const imported = await ok('importBackupOffering', { name: 'compressed', description: 'compressed', zoneid: zone.id, externalid: native.id, allowuserdrivenbackups: 'true' });
  const offering = (await api.waitForJob(imported.jobid as string)).jobresult.backupoffering as { id: string };
  return { zoneId: zone.id, repoDir, offeringId: offering.id };
}

export function compressionApi(api: () => ApiClient) {
  const ok = okCaller(api);
  return {
    async setting(name: string, value: string | number | boolean, zoneid?: string): Promise<void> {
      await ok('updateConfiguration', { name, value: String(value), ...(zoneid && { zoneid }) });
    },
    async jobs(params: Record<string, string> = {}): Promise<CompressionJob[]> {
      return ((await ok('listBackupCompressionJobs', params)).backupcompressionjob as CompressionJob[] | undefined) ?? [];
    },
    async backup(id: string): Promise<CompressedBackup> {
      return ((await ok('listBackups', { id })).backup as CompressedBackup[])[0];
    },
    /** Waits until every backup is Compressed (throws at once on CompressionError). */
    async untilCompressed(ids: string[], timeoutMs: number, what = () => ''): Promise<CompressedBackup[]> {
      return until(
        async () => {
          const backups = await Promise.all(ids.map(async (id) => ((await ok('listBackups', { id })).backup as CompressedBackup[])[0]));
          const broken = backups.find((b) => b.compressionstatus === 'CompressionError');
          if (broken) throw new Error(`backup ${broken.id}: CompressionError; jobs: ${JSON.stringify(await this.jobs({ backupid: broken.id }))} ${what()}`);
          return backups.every((b) => b.compressionstatus === 'Compressed') ? backups : undefined;
        },
        timeoutMs,
        `backups ${ids.join(', ')} to be Compressed ${what()}`,
        200,
      );
    },
    /** Waits until no compression job is scheduled or running. */
    async untilIdle(timeoutMs: number): Promise<void> {
      await until(async () => (await this.jobs()).length === 0, timeoutMs, 'no compression job to be left', 200);
    },
  };
}

/** createBackup, retried while a compression swap holds the chain for a moment (536 "being swapped in"). */
export async function createBackupRetryingSwaps(api: ApiClient, params: Record<string, string>): Promise<{ id: string; jobid: string }> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const r = await api.call('createBackup', params);
    if (r.status === 200) return r.body.createbackupresponse as { id: string; jobid: string };
    const text = JSON.stringify(r.body);
    if (r.status !== 536 || !/being swapped in/.test(text) || Date.now() > deadline) throw new Error(`createBackup: ${r.status} ${text}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

export interface StoredEvent {
  type: string;
  data: Record<string, unknown>;
  revision: number;
  createdAt: Date;
}

/** The events of one stream, straight from the PostgreSQL event store. */
export async function readStream(databaseUrl: string, streamId: string): Promise<StoredEvent[]> {
  const c = new Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    const { rows } = await c.query<{ type: string; data: Record<string, unknown>; stream_revision: number; created_at: Date }>(
      `SELECT type, data, stream_revision, created_at FROM events WHERE stream_id = $1 ORDER BY stream_revision`,
      [streamId],
    );
    return rows.map((r) => ({ type: r.type, data: r.data, revision: r.stream_revision, createdAt: r.created_at }));
  } finally {
    await c.end();
  }
}

/**
 * Chain safety, checked on a VM's whole stream: no Finalizing attempt started while a backup of the VM
 * was pending, and no backup was requested while a swap was in progress. Returns the violations (none
 * expected) and how many Finalizing attempts there were.
 */
export function chainSafetyViolations(events: StoredEvent[]): { violations: string[]; finalizingAttempts: number; backupsDuringCompression: number } {
  let pending: string | null = null;
  const swapping = new Set<string>();
  const compressing = new Set<string>();
  const violations: string[] = [];
  let finalizingAttempts = 0;
  let backupsDuringCompression = 0;
  for (const e of events) {
    const d = e.data as Record<string, string>;
    switch (e.type) {
      case 'BackupRequested':
        if (swapping.size) violations.push(`backup ${d.backupId} requested (rev ${e.revision}) while ${[...swapping].join(', ')} swapped`);
        if (compressing.size) backupsDuringCompression++;
        pending = d.backupId;
        break;
      case 'BackupCompleted':
      case 'BackupFailed':
        pending = null;
        break;
      case 'CompressionStarted':
        if (d.type === 'Finalizing') {
          finalizingAttempts++;
          if (pending) violations.push(`Finalizing of ${d.backupId} started (rev ${e.revision}) while backup ${pending} was running`);
          swapping.add(d.jobId);
        } else compressing.add(d.jobId);
        break;
      case 'CompressionFinalized':
      case 'CompressionJobStopped':
        swapping.delete(d.jobId);
        break;
      case 'CompressionSideFilesWritten':
        compressing.delete(d.jobId);
        break;
      case 'CompressionAttemptFailed':
        swapping.delete(d.jobId);
        compressing.delete(d.jobId);
        break;
    }
  }
  return { violations, finalizingAttempts, backupsDuringCompression };
}
