import { DomainEvent } from '../decider';
import { DomainError } from '../domain-error';
import { backupChainDecider, RequestBackupCommand } from './backup-chain.decider';
import { BackupVolume } from './backup-chain.events';
import { backupDeletionDecider, BackupDeletionCommand, BackupDeletionState, RemovalOutcome } from './backup-deletion.decider';

const at = new Date('2026-11-22T10:00:00Z');
const disks: BackupVolume[] = [{ volumeId: 'v1', target: 'vda', path: '/img/a.qcow2', format: 'qcow2', virtualSizeBytes: 1 << 20 }];
const fold = (events: DomainEvent[]): BackupDeletionState => events.reduce((s, e) => backupDeletionDecider.evolve(s, e), backupDeletionDecider.initialState());
const decide = (events: DomainEvent[], cmd: BackupDeletionCommand) => backupDeletionDecider.decide(cmd, fold(events));
const types = (events: DomainEvent[]) => events.map((e) => e.type);

const request = (backupId: string, over: Partial<RequestBackupCommand['data']> = {}): RequestBackupCommand => ({
  type: 'RequestBackup',
  data: { backupId, vmId: 'vm', jobId: `job-${backupId}`, chainSize: 8, isolated: false, quiesce: false, intervalType: 'MANUAL', name: null, description: null, volumes: disks, fullOnly: false, offeringId: 'o', repositoryId: 'r', hostId: 'h', at, ...over },
});

/** Takes a backup to completion on the history (the chain decider decides it, as the API does). */
function backedUp(h: DomainEvent[], backupId: string, over: Partial<RequestBackupCommand['data']> = {}, when = at): DomainEvent[] {
  const chain = fold(h).compression.chain;
  const req = backupChainDecider.decide({ ...request(backupId, over), data: { ...request(backupId, over).data, at: when } }, chain);
  const after = req.reduce(backupChainDecider.evolve, chain);
  const type = (req[0].data as { type: 'FULL' | 'INCREMENTAL' }).type;
  const done = backupChainDecider.decide({ type: 'CompleteBackup', data: { backupId, type, fullReason: null, volumes: [{ volumeId: 'v1', storedBytes: 100, virtualSizeBytes: 1 << 20 }], checkpointXml: '<x/>', at: when } }, after);
  return [...h, ...req, ...done];
}

const del = (backupId: string, forced = false): BackupDeletionCommand => ({ type: 'DeleteBackup', data: { backupId, jobId: `del-${backupId}`, forced, reason: 'deleteBackup by admin', at } });
const started = (events: DomainEvent[]) => events.find((e) => e.type === 'BackupRemovalStarted')?.data as { backupId: string; mode: string; intoBackupIds: string[]; newParentBackupId: string | null; removalJobId: string } | undefined;

/** Completes the running removal as the host would report it. */
function completeRunning(h: DomainEvent[], outcome?: RemovalOutcome): DomainEvent[] {
  const s = started(h.filter((e) => e.type === 'BackupRemovalStarted').slice(-1));
  if (!s) throw new Error('no removal started');
  const out: RemovalOutcome = outcome ?? (s.mode === 'drop' ? { kind: 'dropped', freedBytes: 100, filesMissing: false } : { kind: 'merged', volumes: s.intoBackupIds.map((c) => ({ backupId: c, volumeId: 'v1', bytesBefore: 100, bytesAfter: 150 })), removedBytes: 100 });
  return [...h, ...decide(h, { type: 'CompleteRemoval', data: { backupId: s.backupId, removalJobId: s.removalJobId, outcome: out, at } })];
}

describe('backup deletion decider', () => {
  it('drops the newest backup at once; the next incremental is taken from its parent', () => {
    let h = backedUp(backedUp(backedUp([], 'b1'), 'b2'), 'b3');
    const events = decide(h, del('b3'));
    expect(types(events)).toEqual(['BackupDeletionRequested', 'BackupRemovalStarted']);
    expect(started(events)).toMatchObject({ backupId: 'b3', mode: 'drop', intoBackupIds: [], newParentBackupId: 'b2', removalJobId: 'b3-r1' });
    h = [...h, ...events];
    // While its files go, no backup of the VM starts.
    expect(() => backupChainDecider.decide(request('b4'), fold(h).compression.chain)).toThrow(DomainError);
    h = completeRunning(h);
    expect(types(h.slice(-1))).toEqual(['BackupExpunged']);
    const next = backupChainDecider.decide(request('b4'), fold(h).compression.chain)[0].data;
    expect(next).toMatchObject({ type: 'INCREMENTAL', parentBackupId: 'b2', parentCheckpointName: 'strata-b2', chainPosition: 2 });
  });

  it('merges a backup others depend on into its child; a deleted full base makes its child the base', () => {
    let h = backedUp(backedUp(backedUp([], 'b1'), 'b2'), 'b3');
    h = [...h, ...decide(h, del('b2'))];
    expect(started(h)).toMatchObject({ backupId: 'b2', mode: 'merge', intoBackupIds: ['b3'], newParentBackupId: 'b1' });
    h = completeRunning(h);
    expect(types(h.slice(-2))).toEqual(['BackupsMerged', 'BackupExpunged']);
    expect(h[h.length - 2].data).toMatchObject({ backupId: 'b2', intoBackupIds: ['b3'], newParentBackupId: 'b1', bytesBefore: 200, bytesAfter: 150 });
    expect(fold(h).compression.chain.completed.b3.parentBackupId).toBe('b1');

    const full = decide(h, del('b1'));
    expect(started(full)).toMatchObject({ backupId: 'b1', mode: 'merge', intoBackupIds: ['b3'], newParentBackupId: null });
    h = completeRunning([...h, ...full]);
    const chain = fold(h).compression.chain;
    expect(chain.completed.b3.parentBackupId).toBeNull();
    expect(chain.chain.map((l) => l.backupId)).toEqual(['b3']);
    // The chain goes on from b3, and it is one backup long now.
    expect(backupChainDecider.decide(request('b4'), chain)[0].data).toMatchObject({ type: 'INCREMENTAL', parentBackupId: 'b3', chainPosition: 1 });
  });

  it('waits (Removed) while a restore reads the files, and starts when the restore ends', () => {
    let h = backedUp(backedUp([], 'b1'), 'b2');
    const restore = backupChainDecider.decide(
      { type: 'RequestRestore', data: { restoreId: 'r1', jobId: 'j', vmId: 'vm', backupId: 'b2', kind: 'volume', quick: false, targetVmId: 'vm2', hostId: 'h', volumeIds: [], domainName: 'd', newVmName: null, destinations: [{ volumeId: 'v1', path: '/x' }], backupParameter: 'backupid', at } },
      fold(h).compression.chain,
    );
    h = [...h, ...restore];
    const events = decide(h, del('b1'));
    expect(types(events)).toEqual(['BackupDeletionRequested']);
    expect((events[0].data as { waitingFor: string[] }).waitingFor).toEqual(['restore r1 reads it']);
    h = [...h, ...events];
    expect(decide(h, { type: 'AdvanceRemovals', data: { at } })).toEqual([]);
    // A Removed backup cannot be restored.
    expect(() => backupChainDecider.decide({ type: 'RequestRestore', data: { ...(restore[0].data as object), restoreId: 'r2', backupId: 'b1' } as never }, fold(h).compression.chain)).toThrow(/Removed/);
    h = [...h, ...backupChainDecider.decide({ type: 'CompleteRestore', data: { restoreId: 'r1', disks: [], consolidation: null, at } }, fold(h).compression.chain)];
    expect(started(decide(h, { type: 'AdvanceRemovals', data: { at } }))).toMatchObject({ backupId: 'b1', mode: 'merge', intoBackupIds: ['b2'] });
  });

  it('waits while a backup of the VM runs; a deleted tip with a new child is merged into it', () => {
    let h = backedUp([], 'b1');
    h = [...h, ...backupChainDecider.decide(request('b2'), fold(h).compression.chain)];
    const events = decide(h, del('b1'));
    expect(types(events)).toEqual(['BackupDeletionRequested']);
    h = [...h, ...events];
    h = [...h, ...backupChainDecider.decide({ type: 'CompleteBackup', data: { backupId: 'b2', type: 'INCREMENTAL', fullReason: null, volumes: [], checkpointXml: '<x/>', at } }, fold(h).compression.chain)];
    expect(started(decide(h, { type: 'AdvanceRemovals', data: { at } }))).toMatchObject({ backupId: 'b1', mode: 'merge', intoBackupIds: ['b2'], newParentBackupId: null });
  });

  it('cancels the compression of a deleted backup and waits for a running attempt to stop', () => {
    let h = backedUp(backedUp([], 'b1'), 'b2');
    h = [...h, { type: 'CompressionJobScheduled', data: { jobId: 'c1', backupId: 'b2', vmId: 'vm', zoneId: 'z', type: 'Starting', library: 'zstd', scheduledAt: at.toISOString(), sideFiles: [] } }];
    h = [...h, { type: 'CompressionStarted', data: { jobId: 'c1', backupId: 'b2', type: 'Starting', attempt: 1, hostId: 'h', startedAt: at.toISOString(), deadline: at.toISOString(), settings: { coroutines: 1, rateLimitMBps: 0, minimumFreeStorage: 1, timeoutSeconds: 60 } } }];
    const events = decide(h, del('b2'));
    expect(types(events)).toEqual(['BackupDeletionRequested', 'CompressionCancelled']);
    h = [...h, ...events, { type: 'CompressionJobStopped', data: { jobId: 'c1', backupId: 'b2', type: 'Starting', attempt: 1, outcome: 'failed', detail: 'stopped', stoppedAt: at.toISOString() } }];
    expect(started(decide(h, { type: 'AdvanceRemovals', data: { at } }))).toMatchObject({ backupId: 'b2', mode: 'drop' });
  });

  it('a removal whose files are missing fails without forced, and succeeds with it (recorded)', () => {
    let h = backedUp([], 'b1');
    h = [...h, ...decide(h, del('b1'))];
    const s = started(h)!;
    h = [...h, ...decide(h, { type: 'FailRemoval', data: { backupId: 'b1', removalJobId: s.removalJobId, reason: 'files missing; use forced=true', at } })];
    expect(types(h.slice(-1))).toEqual(['BackupRemovalFailed']);
    const again = decide(h, del('b1', true));
    expect(started(again)).toMatchObject({ backupId: 'b1', removalJobId: 'b1-r2' });
    h = completeRunning([...h, ...again], { kind: 'dropped', freedBytes: 0, filesMissing: true });
    expect(h[h.length - 1].data).toMatchObject({ backupId: 'b1', filesMissing: true, reason: expect.stringContaining('already missing') });
  });

  it('retention deletes the backups of the interval type beyond maxbackups, oldest first, one removal at a time', () => {
    let h: DomainEvent[] = [];
    for (let i = 1; i <= 4; i++) h = backedUp(h, `b${i}`, { intervalType: 'HOURLY' }, new Date(at.getTime() + i * 1000));
    h = backedUp(h, 'm1', { intervalType: 'MANUAL' }, new Date(at.getTime() + 9000));
    const events = decide(h, { type: 'ApplyRetention', data: { intervalType: 'HOURLY', maxBackups: 2, jobId: 'ret', reason: 'retention', at } });
    expect(events.filter((e) => e.type === 'BackupDeletionRequested').map((e) => (e.data as { backupId: string }).backupId)).toEqual(['b1', 'b2']);
    expect(started(events)).toMatchObject({ backupId: 'b1', mode: 'merge', intoBackupIds: ['b2'] });
    h = completeRunning([...h, ...events]);
    // The finished merge starts the next one in the same decision: b2 (now the base) merged into b3.
    expect(started(h.slice(-1))).toMatchObject({ backupId: 'b2', mode: 'merge', intoBackupIds: ['b3'], newParentBackupId: null });
    expect(decide(h, { type: 'ApplyRetention', data: { intervalType: 'HOURLY', maxBackups: 2, jobId: 'ret2', reason: 'retention', at } })).toEqual([]);
  });

  it('deleting all backups of a VM marks every one; a failed backup is expunged at once', () => {
    let h = backedUp(backedUp([], 'b1'), 'b2');
    h = [...h, ...backupChainDecider.decide(request('b3'), fold(h).compression.chain)];
    h = [...h, ...backupChainDecider.decide({ type: 'FailBackup', data: { backupId: 'b3', reason: 'x', cleanedUp: [], checkpointTrusted: true, at } }, fold(h).compression.chain)];
    const events = decide(h, { type: 'DeleteAllBackups', data: { jobId: 'j', forced: true, reason: 'VM removed from its offering', at } });
    expect(types(events)).toEqual(['BackupDeletionRequested', 'BackupDeletionRequested', 'BackupDeletionRequested', 'BackupExpunged', 'BackupRemovalStarted']);
    expect(started(events)).toMatchObject({ backupId: 'b1', mode: 'merge' });
  });

  it('refuses unknown and running backups', () => {
    const h = backedUp([], 'b1');
    expect(() => decide(h, del('nope'))).toThrow(expect.objectContaining({ kind: 'not_found', parameter: 'id' }));
    const running = [...h, ...backupChainDecider.decide(request('b2'), fold(h).compression.chain)];
    expect(() => decide(running, del('b2'))).toThrow(expect.objectContaining({ kind: 'conflict' }));
  });
});
