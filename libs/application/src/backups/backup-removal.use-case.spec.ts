import { asyncJobDecider, backupChainDecider, backupDeletionDecider, BackupVolume, DomainEvent, Streams } from '@strata/domain';
import { AppendResult, EventStore, NewEvent, RecordedEvent } from '@strata/event-store';
import { CommandHandler } from '../command-handler';
import { deterministicId } from '../ids';
import { BackupRemovalUseCase } from './backup-removal.use-case';

const at = new Date('2026-11-22T10:00:00Z');
const vmId = 'vm-1';
const disks: BackupVolume[] = [{ volumeId: 'v1', target: 'vda', path: '/img/a.qcow2', format: 'qcow2', virtualSizeBytes: 1 << 20 }];

/** Only what CommandHandler uses: streams in memory, appends checked against the revision read. */
function memoryStore(): EventStore & { events(streamId: string): RecordedEvent[] } {
  const streams = new Map<string, RecordedEvent[]>();
  const events = (streamId: string) => streams.get(streamId) ?? [];
  return {
    events,
    async readStream(streamId: string) {
      return [...events(streamId)];
    },
    async append(streamId: string, added: NewEvent[], expected): Promise<AppendResult> {
      const current = events(streamId);
      const revision = current.length ? current.length - 1 : 'no_stream';
      if (expected !== 'any' && expected !== revision) throw new Error(`${streamId} is at ${revision}, not ${expected}`);
      const recorded = added.map((e, i) => ({ ...e, metadata: e.metadata ?? {}, streamId, streamRevision: current.length + i, position: '0', createdAt: at }));
      streams.set(streamId, [...current, ...recorded]);
      return { nextExpectedRevision: current.length + added.length - 1, position: '0' };
    },
  } as EventStore & { events(streamId: string): RecordedEvent[] };
}

/** A VM with one completed backup b1 whose deleteBackup (async job del-b1) runs removal b1-r1 on the host. */
async function removalRunning() {
  const store = memoryStore();
  let ids = 0;
  const handler = new CommandHandler(store, () => `random-${++ids}`);
  const stream = Streams.vmBackups(vmId);
  await handler.handle(stream, backupChainDecider, {
    type: 'RequestBackup',
    data: { backupId: 'b1', vmId, jobId: 'job-b1', chainSize: 8, isolated: false, quiesce: false, intervalType: 'MANUAL', name: null, description: null, volumes: disks, fullOnly: false, offeringId: 'o', repositoryId: 'r', hostId: 'h', at },
  });
  await handler.handle(stream, backupChainDecider, { type: 'CompleteBackup', data: { backupId: 'b1', type: 'FULL', fullReason: null, volumes: [{ volumeId: 'v1', storedBytes: 100, virtualSizeBytes: 1 << 20 }], checkpointXml: '<x/>', at } });
  await handler.handle(Streams.asyncJob('del-b1'), asyncJobDecider, { type: 'CreateAsyncJob', data: { jobId: 'del-b1', command: 'deleteBackup', userId: 'u', instanceType: 'Backup', instanceId: 'b1', at } });
  const deletion = await handler.handle(stream, backupDeletionDecider, { type: 'DeleteBackup', data: { backupId: 'b1', jobId: 'del-b1', forced: false, reason: 'deleteBackup by admin', at } });
  expect(deletion.events.find((e: DomainEvent) => e.type === 'BackupRemovalStarted')?.data).toMatchObject({ removalJobId: 'b1-r1' });
  return { store, useCase: new BackupRemovalUseCase(handler), stream, job: Streams.asyncJob('del-b1') };
}

describe('BackupRemovalUseCase', () => {
  it('records a removal that succeeded and ends its deleteBackup job, with ids derived from the removal', async () => {
    const { store, useCase, stream, job } = await removalRunning();
    const before = store.events(stream).length;
    await useCase.succeeded({ type: 'BackupRemovalSucceeded', vmId, backupId: 'b1', removalJobId: 'b1-r1', outcome: { kind: 'dropped', freedBytes: 100, filesMissing: false }, at: at.toISOString() });
    const added = store.events(stream).slice(before);
    expect(added.map((e) => e.type)).toContain('BackupExpunged');
    expect(added.map((e) => e.id)).toEqual(added.map((_e, i) => deterministicId('b1-r1', 'completed', String(i))));
    expect(store.events(job).slice(1)).toEqual([
      expect.objectContaining({
        id: deterministicId('b1-r1', 'del-b1', 'job-succeeded'),
        type: 'AsyncJobSucceeded',
        data: { jobId: 'del-b1', resultType: 'success', result: { success: true, displaytext: 'backup b1 was removed' }, completedAt: at.toISOString() },
      }),
    ]);
  });

  it('records a removal that failed and fails its deleteBackup job with the reason', async () => {
    const { store, useCase, stream, job } = await removalRunning();
    const before = store.events(stream).length;
    await useCase.failed({ type: 'BackupRemovalFailed', vmId, backupId: 'b1', removalJobId: 'b1-r1', reason: 'files missing', at: at.toISOString() });
    const added = store.events(stream).slice(before);
    expect(added[0]).toMatchObject({ id: deterministicId('b1-r1', 'failed', '0'), type: 'BackupRemovalFailed', data: { backupId: 'b1', removalJobId: 'b1-r1', reason: 'files missing' } });
    expect(added.map((e) => e.id)).toEqual(added.map((_e, i) => deterministicId('b1-r1', 'failed', String(i))));
    expect(store.events(job).slice(1)).toEqual([
      expect.objectContaining({
        id: deterministicId('b1-r1', 'del-b1', 'job-failed'),
        type: 'AsyncJobFailed',
        data: { jobId: 'del-b1', errorCode: 530, errorText: 'backup b1 could not be removed: files missing', completedAt: at.toISOString() },
      }),
    ]);
  });

  it('leaves the jobs alone when the report is of another removal attempt', async () => {
    const { store, useCase, stream, job } = await removalRunning();
    const before = store.events(stream).length;
    await useCase.succeeded({ type: 'BackupRemovalSucceeded', vmId, backupId: 'b1', removalJobId: 'b1-r0', outcome: { kind: 'dropped', freedBytes: 100, filesMissing: false }, at: at.toISOString() });
    await useCase.failed({ type: 'BackupRemovalFailed', vmId, backupId: 'b1', removalJobId: 'b1-r0', reason: 'stale', at: at.toISOString() });
    expect(store.events(stream)).toHaveLength(before);
    expect(store.events(job).map((e) => e.type)).toEqual(['AsyncJobCreated']);
  });
});
