import { fold } from '../decider';
import { deciderSpecification } from '../testing/decider-specification';
import { backupChainDecider, backupsReadByRestores, RequestBackupCommand, RequestRestoreCommand } from './backup-chain.decider';
import { BackupChainEvent, BackupRequested, BackupVolume } from './backup-chain.events';
import { CompressionAttemptFailed, CompressionFinalized, CompressionStarted } from '../compression/backup-compression.events';

const at = new Date('2026-11-22T10:00:00Z');
const vmId = 'vm-1';
const spec = deciderSpecification(backupChainDecider);
const disks: BackupVolume[] = [
  { volumeId: 'v1', target: 'vda', path: '/images/a.qcow2', format: 'qcow2', virtualSizeBytes: 1 << 30 },
  { volumeId: 'v2', target: 'vdb', path: '/images/b.qcow2', format: 'qcow2', virtualSizeBytes: 1 << 29 },
];

const backup = (backupId: string, over: Partial<RequestBackupCommand['data']> = {}): RequestBackupCommand => ({
  type: 'RequestBackup',
  data: { backupId, vmId, jobId: `job-${backupId}`, chainSize: 8, isolated: false, quiesce: false, intervalType: 'MANUAL', name: null, description: null, volumes: disks, fullOnly: false, offeringId: 'o', repositoryId: 'r', hostId: 'h', at, ...over },
});

function run(history: BackupChainEvent[], command: Parameters<typeof backupChainDecider.decide>[0]): BackupChainEvent[] {
  return [...history, ...backupChainDecider.decide(command, fold(backupChainDecider, history))];
}

function backedUp(history: BackupChainEvent[], backupId: string, over: Partial<RequestBackupCommand['data']> = {}): BackupChainEvent[] {
  const h = run(history, backup(backupId, over));
  const type = (h[h.length - 1] as BackupRequested).data.type;
  return run(h, { type: 'CompleteBackup', data: { backupId, type, fullReason: null, volumes: [], checkpointXml: '<domaincheckpoint/>', at } });
}

const restore = (restoreId: string, backupId: string, over: Partial<RequestRestoreCommand['data']> = {}): RequestRestoreCommand => ({
  type: 'RequestRestore',
  data: { restoreId, jobId: `job-${restoreId}`, vmId, backupId, kind: 'vm', quick: false, targetVmId: vmId, hostId: 'h', volumeIds: [], domainName: 'web', newVmName: null, destinations: ['v1', 'v2', 'v9'].map((v) => ({ volumeId: v, path: `/images/${v}` })), backupParameter: 'id', at, ...over },
});

const chainOfThree = () => backedUp(backedUp(backedUp([], 'b1'), 'b2'), 'b3');

describe('backup chain decider: restores', () => {
  it('a restore reads the chain up to its backup, base first, with every volume when none is named', () => {
    spec
      .given(chainOfThree())
      .when(restore('r1', 'b2'))
      .then([
        {
          type: 'RestoreRequested',
          data: { restoreId: 'r1', jobId: 'job-r1', vmId, backupId: 'b2', kind: 'vm', quick: false, targetVmId: vmId, hostId: 'h', volumeIds: ['v1', 'v2'], domainName: 'web', newVmName: null, destinations: [{ volumeId: 'v1', path: '/images/v1' }, { volumeId: 'v2', path: '/images/v2' }], readsBackupIds: ['b1', 'b2'], requestedAt: at.toISOString() },
        },
      ]);
  });

  it('an isolated backup reads only itself', () => {
    const h = backedUp(chainOfThree(), 'iso', { isolated: true });
    const events = backupChainDecider.decide(restore('r1', 'iso'), fold(backupChainDecider, h));
    expect(events[0]).toMatchObject({ type: 'RestoreRequested', data: { readsBackupIds: ['iso'] } });
  });

  it('refuses unknown backups (naming the parameter), unfinished ones and volumes the backup does not hold', () => {
    spec.given(chainOfThree()).when(restore('r1', 'nope', { backupParameter: 'backupid' })).thenThrows('not_found', 'backupid');
    spec.given(run(chainOfThree(), backup('b4'))).when(restore('r1', 'b4')).thenThrows('conflict');
    spec.given(chainOfThree()).when(restore('r1', 'b1', { kind: 'volume', volumeIds: ['v9'], targetVmId: 'vm-2' })).thenThrows('invalid', 'volumeid');
  });

  it('refuses restoring a VM while it is backed up, and backing it up while it is restored', () => {
    spec.given(run(chainOfThree(), backup('b4'))).when(restore('r1', 'b1')).thenThrows('conflict');
    spec.given(run(chainOfThree(), restore('r1', 'b1'))).when(backup('b4')).thenThrows('conflict');
  });

  it('a volume restored onto another VM neither blocks backups nor ends the chain', () => {
    const h = run(chainOfThree(), restore('r1', 'b3', { kind: 'volume', volumeIds: ['v2'], targetVmId: 'vm-2' }));
    const events = backupChainDecider.decide(backup('b4'), fold(backupChainDecider, h));
    expect(events[0]).toMatchObject({ type: 'BackupRequested', data: { type: 'INCREMENTAL', parentBackupId: 'b3' } });
  });

  it('the first backup after a restore of the VM is full, saying why', () => {
    let h = run(chainOfThree(), restore('r1', 'b2'));
    h = run(h, { type: 'CompleteRestore', data: { restoreId: 'r1', disks: [], consolidation: null, at } });
    const events = backupChainDecider.decide(backup('b4'), fold(backupChainDecider, h));
    expect(events[0]).toMatchObject({ type: 'BackupRequested', data: { type: 'FULL', fullReason: 'restored since last backup' } });
  });

  it('a failed restore also ends the chain (the disks may be half restored)', () => {
    let h = run(chainOfThree(), restore('r1', 'b2'));
    h = run(h, { type: 'FailRestore', data: { restoreId: 'r1', reason: 'disk full', cleanedUp: [], at } });
    expect(backupChainDecider.decide(backup('b4'), fold(backupChainDecider, h))[0]).toMatchObject({ data: { type: 'FULL', fullReason: 'restored since last backup' } });
  });

  it('a quick restore asks for a consolidation, and its backups stay in use until that is done', () => {
    const disk = { volumeId: 'v1', target: 'vda', path: '/images/a.qcow2' };
    let h = run(chainOfThree(), restore('r1', 'b2', { quick: true }));
    const completed = backupChainDecider.decide({ type: 'CompleteRestore', data: { restoreId: 'r1', disks: [disk], consolidation: { consolidationJobId: 'cj', domainName: 'web' }, at } }, fold(backupChainDecider, h));
    expect(completed.map((e) => e.type)).toEqual(['RestoreCompleted', 'ConsolidationRequested']);
    expect(completed[1].data).toEqual({ restoreId: 'r1', consolidationJobId: 'cj', targetVmId: vmId, hostId: 'h', domainName: 'web', disks: [disk], requestedAt: at.toISOString() });
    h = [...h, ...completed];
    expect([...backupsReadByRestores(fold(backupChainDecider, h))]).toEqual(['b1', 'b2']);
    // A second restore of the VM waits for the consolidation; backups may run meanwhile.
    spec.given(h).when(restore('r2', 'b3')).thenThrows('conflict');
    expect(backupChainDecider.decide(backup('b4'), fold(backupChainDecider, h))[0].type).toBe('BackupRequested');
    h = run(h, { type: 'CompleteConsolidation', data: { restoreId: 'r1', at } });
    expect(backupsReadByRestores(fold(backupChainDecider, h)).size).toBe(0);
  });

  it('reports that arrive twice change nothing', () => {
    let h = run(chainOfThree(), restore('r1', 'b2'));
    spec.given(h).when(restore('r1', 'b2')).thenNothingHappens();
    h = run(h, { type: 'CompleteRestore', data: { restoreId: 'r1', disks: [], consolidation: null, at } });
    spec.given(h).when({ type: 'CompleteRestore', data: { restoreId: 'r1', disks: [], consolidation: null, at } }).thenNothingHappens();
    spec.given(h).when({ type: 'FailRestore', data: { restoreId: 'r1', reason: 'x', cleanedUp: [], at } }).thenNothingHappens();
    spec.given(h).when({ type: 'CompleteConsolidation', data: { restoreId: 'r1', at } }).thenNothingHappens();
  });

  it('a failed consolidation keeps the backups in use: the VM still reads them', () => {
    let h = run(chainOfThree(), restore('r1', 'b3', { quick: true }));
    h = run(h, { type: 'CompleteRestore', data: { restoreId: 'r1', disks: [], consolidation: { consolidationJobId: 'cj', domainName: 'web' }, at } });
    h = run(h, { type: 'FailConsolidation', data: { restoreId: 'r1', reason: 'no space', at } });
    expect([...backupsReadByRestores(fold(backupChainDecider, h))]).toEqual(['b1', 'b2', 'b3']);
  });

  describe('the compression swap lock', () => {
    const settings: CompressionStarted['data']['settings'] = { coroutines: 8, rateLimitMBps: 0, minimumFreeStorage: 1, timeoutSeconds: 600 };
    const swapStarted = (backupId: string, jobId: string): CompressionStarted => ({
      type: 'CompressionStarted',
      data: { jobId, backupId, type: 'Finalizing', attempt: 1, hostId: 'h', startedAt: at.toISOString(), deadline: at.toISOString(), settings },
    });
    const swapped = (backupId: string, jobId: string): CompressionFinalized => ({
      type: 'CompressionFinalized',
      data: { jobId, backupId, attempt: 1, hostId: 'h', volumes: [], finalizedAt: at.toISOString() },
    });
    const swapFailed = (backupId: string, jobId: string): CompressionAttemptFailed => ({
      type: 'CompressionAttemptFailed',
      data: { jobId, backupId, type: 'Finalizing', attempt: 1, hostId: 'h', reason: 'host gone', failedAt: at.toISOString(), retryAt: null },
    });
    // Compression events share the VM's stream; the chain decider folds them for the lock alone.
    const given = (events: unknown[]) => spec.given([...chainOfThree(), ...(events as BackupChainEvent[])]);

    it('refuses every kind of restore that would read a file mid-swap, naming the backup and the job', () => {
      for (const kind of ['vm', 'volume', 'newVm'] as const) {
        given([swapStarted('b1', 'final-b1')]).when(restore('r1', 'b2', { kind, quick: kind !== 'vm', targetVmId: kind === 'vm' ? vmId : 'vm-2' })).thenThrows('conflict');
      }
      expect(() => backupChainDecider.decide(restore('r1', 'b3'), fold(backupChainDecider, [...chainOfThree(), swapStarted('b2', 'final-b2') as unknown as BackupChainEvent]))).toThrow(
        'the compressed files of backup b2 (read by this restore) are being swapped in by compression job final-b2; restore it again in a few seconds',
      );
    });

    it('lets a restore through whose chain holds no swapped file', () => {
      const events = backupChainDecider.decide(restore('r1', 'b3'), fold(backupChainDecider, [...backedUp(chainOfThree(), 'iso', { isolated: true }), swapStarted('iso', 'final-iso') as unknown as BackupChainEvent]));
      expect(events).toEqual([expect.objectContaining({ type: 'RestoreRequested', data: expect.objectContaining({ readsBackupIds: ['b1', 'b2', 'b3'] }) })]);
    });

    it('lets the restore through once the swap is done, or its attempt failed', () => {
      for (const end of [swapped('b1', 'final-b1'), swapFailed('b1', 'final-b1')]) {
        given([swapStarted('b1', 'final-b1'), end])
          .when(restore('r1', 'b2'))
          .then([
            {
              type: 'RestoreRequested',
              data: { restoreId: 'r1', jobId: 'job-r1', vmId, backupId: 'b2', kind: 'vm', quick: false, targetVmId: vmId, hostId: 'h', volumeIds: ['v1', 'v2'], domainName: 'web', newVmName: null, destinations: [{ volumeId: 'v1', path: '/images/v1' }, { volumeId: 'v2', path: '/images/v2' }], readsBackupIds: ['b1', 'b2'], requestedAt: at.toISOString() },
            },
          ]);
      }
    });
  });

  describe('a quick restore onto another host', () => {
    it('records where the VM comes from, and the completion says the old host is to forget it', () => {
      let h = run(chainOfThree(), restore('r1', 'b3', { quick: true, hostId: 'h2', movedFromHostId: 'h' }));
      expect(h[h.length - 1]).toMatchObject({ type: 'RestoreRequested', data: { hostId: 'h2', movedFromHostId: 'h' } });
      const disk = { volumeId: 'v1', target: 'vda', path: '/images/a.qcow2' };
      spec
        .given(h)
        .when({ type: 'CompleteRestore', data: { restoreId: 'r1', disks: [disk], consolidation: { consolidationJobId: 'cj', domainName: 'web' }, at } })
        .then([
          { type: 'RestoreCompleted', data: { restoreId: 'r1', backupId: 'b3', kind: 'vm', quick: true, targetVmId: vmId, disks: [disk], movedFromHostId: 'h', completedAt: at.toISOString() } },
          { type: 'ConsolidationRequested', data: { restoreId: 'r1', consolidationJobId: 'cj', targetVmId: vmId, hostId: 'h2', domainName: 'web', disks: [disk], requestedAt: at.toISOString() } },
        ]);
      h = run(h, { type: 'CompleteRestore', data: { restoreId: 'r1', disks: [disk], consolidation: { consolidationJobId: 'cj', domainName: 'web' }, at } });
      expect(fold(backupChainDecider, h).restores.r1).toMatchObject({ phase: 'consolidating', hostId: 'h2' });
    });

    it('only a quick restore of the VM itself moves it; a plain one, or a volume restore, is refused naming hostid', () => {
      spec.given(chainOfThree()).when(restore('r1', 'b3', { quick: false, hostId: 'h2', movedFromHostId: 'h' })).thenThrows('invalid', 'hostid');
      spec.given(chainOfThree()).when(restore('r1', 'b3', { kind: 'volume', quick: true, volumeIds: ['v1'], targetVmId: 'vm-2', hostId: 'h2', movedFromHostId: 'h' })).thenThrows('invalid', 'hostid');
      spec.given(chainOfThree()).when(restore('r1', 'b3', { kind: 'vm', quick: true, startVm: true })).thenThrows('invalid', 'hostid');
    });
  });
});
