import { deciderSpecification } from '../testing/decider-specification';
import { backupChainDecider, RequestBackupCommand } from './backup-chain.decider';
import { BackupChainEvent, BackupRequested, BackupVolume } from './backup-chain.events';

const at = new Date('2026-11-22T10:00:00Z');
const vmId = 'vm-1';
const spec = deciderSpecification(backupChainDecider);
const disks: BackupVolume[] = [
  { volumeId: 'v1', target: 'vda', path: '/var/lib/libvirt/images/a.qcow2', format: 'qcow2', virtualSizeBytes: 1 << 30 },
  { volumeId: 'v2', target: 'vdb', path: '/var/lib/libvirt/images/b.qcow2', format: 'qcow2', virtualSizeBytes: 1 << 29 },
];

const request = (backupId: string, over: Partial<RequestBackupCommand['data']> = {}): RequestBackupCommand => ({
  type: 'RequestBackup',
  data: { backupId, vmId, jobId: `job-${backupId}`, chainSize: 8, isolated: false, quiesce: false, intervalType: 'MANUAL', name: null, description: null, volumes: disks, fullOnly: false, offeringId: 'o', repositoryId: 'r', hostId: 'h', at, ...over },
});

/** Runs a backup to completion and returns its events, so histories read like the operator's actions. */
function backedUp(history: BackupChainEvent[], backupId: string, over: Partial<RequestBackupCommand['data']> = {}): BackupChainEvent[] {
  const state = history.reduce(backupChainDecider.evolve, backupChainDecider.initialState());
  const requested = backupChainDecider.decide(request(backupId, over), state);
  const after = requested.reduce(backupChainDecider.evolve, state);
  const requestedType = (requested[0] as BackupRequested).data.type;
  const completed = backupChainDecider.decide({ type: 'CompleteBackup', data: { backupId, type: requestedType, fullReason: null, volumes: [], checkpointXml: '<domaincheckpoint/>', at } }, after);
  return [...history, ...requested, ...completed];
}

function requested(history: BackupChainEvent[], cmd: RequestBackupCommand): BackupRequested['data'] {
  const events = backupChainDecider.decide(cmd, history.reduce(backupChainDecider.evolve, backupChainDecider.initialState()));
  return (events[0] as BackupRequested).data;
}

describe('backup chain decider', () => {
  it('the first backup is full and starts a chain named after it', () => {
    expect(requested([], request('b1'))).toMatchObject({ type: 'FULL', fullReason: 'first backup', chainId: 'b1', chainPosition: 0, parentBackupId: null, checkpointName: 'strata-b1' });
  });

  it('the next backups are incremental from the previous one until the chain size is reached', () => {
    let h = backedUp([], 'b1', { chainSize: 3 });
    expect(requested(h, request('b2', { chainSize: 3 }))).toMatchObject({ type: 'INCREMENTAL', fullReason: null, chainId: 'b1', parentBackupId: 'b1', chainPosition: 1, parentCheckpointName: 'strata-b1' });
    h = backedUp(h, 'b2', { chainSize: 3 });
    h = backedUp(h, 'b3', { chainSize: 3 });
    expect(requested(h, request('b4', { chainSize: 3 }))).toMatchObject({ type: 'FULL', fullReason: 'chain size reached', chainId: 'b4' });
  });

  it('chain size 1 means every backup is full; below 1 means unlimited', () => {
    const h = backedUp([], 'b1');
    expect(requested(h, request('b2', { chainSize: 1 }))).toMatchObject({ type: 'FULL', fullReason: 'chain size reached' });
    let long = backedUp([], 'b0', { chainSize: 0 });
    for (let i = 1; i < 20; i++) long = backedUp(long, `b${i}`, { chainSize: 0 });
    expect(requested(long, request('b20', { chainSize: 0 }))).toMatchObject({ type: 'INCREMENTAL', chainPosition: 20 });
  });

  it('an isolated backup is full and neither ends nor joins the current chain', () => {
    let h = backedUp([], 'b1');
    expect(requested(h, request('iso', { isolated: true }))).toMatchObject({ type: 'FULL', fullReason: 'isolated', chainId: 'iso', isolated: true });
    h = backedUp(h, 'iso', { isolated: true });
    expect(requested(h, request('b2'))).toMatchObject({ type: 'INCREMENTAL', parentBackupId: 'b1', chainId: 'b1', chainPosition: 1 });
  });

  it('finishBackupChain makes the next backup full, saying why', () => {
    const h = backedUp([], 'b1');
    const ended = backupChainDecider.decide({ type: 'FinishChain', data: { vmId, reason: 'operator', at } }, h.reduce(backupChainDecider.evolve, backupChainDecider.initialState()));
    expect(ended).toEqual([{ type: 'ChainEnded', data: { vmId, chainId: 'b1', reason: 'operator', endedAt: at.toISOString() } }]);
    expect(requested([...h, ...ended], request('b2'))).toMatchObject({ type: 'FULL', fullReason: 'chain finished' });
  });

  it('changed disks or full-backup-only disks make a full', () => {
    const h = backedUp([], 'b1');
    expect(requested(h, request('b2', { volumes: [disks[0]] }))).toMatchObject({ type: 'FULL', fullReason: 'disks changed' });
    expect(requested(h, request('b2', { volumes: [{ ...disks[0], virtualSizeBytes: 2 << 30 }, disks[1]] }))).toMatchObject({ fullReason: 'disks changed' });
    expect(requested(h, request('b2', { fullOnly: true }))).toMatchObject({ type: 'FULL', fullReason: 'full-backup-only disks' });
  });

  it('refuses a second backup while one runs, but a repeated request is a no-op', () => {
    const pending = backupChainDecider.decide(request('b1'), backupChainDecider.initialState());
    spec.given(pending).when(request('b2')).thenThrows('conflict');
    spec.given(pending).when(request('b1')).thenNothingHappens();
  });

  it('a failed incremental does not join the chain: the next one is incremental from the last good backup', () => {
    const h = backedUp([], 'b1');
    const req = backupChainDecider.decide(request('b2'), h.reduce(backupChainDecider.evolve, backupChainDecider.initialState()));
    const failed: BackupChainEvent = { type: 'BackupFailed', data: { backupId: 'b2', reason: 'timeout', cleanedUp: ['target files'], checkpointTrusted: true, failedAt: at.toISOString() } };
    expect(requested([...h, ...req, failed], request('b3'))).toMatchObject({ type: 'INCREMENTAL', parentBackupId: 'b1', chainPosition: 1 });
  });

  it('a failure that leaves the bitmap in doubt makes the next backup full', () => {
    const h = backedUp([], 'b1');
    const req = backupChainDecider.decide(request('b2'), h.reduce(backupChainDecider.evolve, backupChainDecider.initialState()));
    const failed: BackupChainEvent = { type: 'BackupFailed', data: { backupId: 'b2', reason: 'agent crashed', cleanedUp: [], checkpointTrusted: false, failedAt: at.toISOString() } };
    expect(requested([...h, ...req, failed], request('b3'))).toMatchObject({ type: 'FULL', fullReason: 'checkpoint or bitmap not trusted' });
  });

  it('a host that fell back to a full starts a new chain with it', () => {
    const h = backedUp([], 'b1');
    const req = backupChainDecider.decide(request('b2'), h.reduce(backupChainDecider.evolve, backupChainDecider.initialState()));
    const state = [...h, ...req].reduce(backupChainDecider.evolve, backupChainDecider.initialState());
    const done = backupChainDecider.decide({ type: 'CompleteBackup', data: { backupId: 'b2', type: 'FULL', fullReason: 'checkpoint or bitmap not trusted', volumes: [], checkpointXml: '<x/>', at } }, state);
    expect(done[0]).toMatchObject({ type: 'BackupCompleted', data: { type: 'FULL', chainId: 'b2', fullReason: 'checkpoint or bitmap not trusted' } });
    expect(requested([...h, ...req, ...done], request('b3'))).toMatchObject({ type: 'INCREMENTAL', chainId: 'b2', parentBackupId: 'b2', chainPosition: 1 });
  });

  it('completion and failure reports for a backup that is no longer running change nothing (retried reports)', () => {
    const h = backedUp([], 'b1');
    spec.given(h).when({ type: 'CompleteBackup', data: { backupId: 'b1', type: 'FULL', fullReason: null, volumes: [], checkpointXml: '', at } }).thenNothingHappens();
    spec.given(h).when({ type: 'FailBackup', data: { backupId: 'b1', reason: 'late', cleanedUp: [], checkpointTrusted: true, at } }).thenNothingHappens();
    spec.given(h).when({ type: 'StartBackup', data: { backupId: 'b9', hostId: 'h', at } }).thenThrows('not_found');
  });
});
