import { DomainEvent, fold } from '../decider';
import { DomainError } from '../domain-error';
import { backupChainDecider, RequestBackupCommand } from '../backups/backup-chain.decider';
import { BackupChainEvent } from '../backups/backup-chain.events';
import { deciderSpecification } from '../testing/decider-specification';
import { backupCompressionDecider, BackupCompressionState, compressionTouchesFiles, sideFilesLeftBehind } from './backup-compression.decider';
import { CompressionAttemptSettings, CompressionSideFile } from './backup-compression.events';

const t0 = new Date('2026-11-22T10:00:00Z');
const at = (seconds: number) => new Date(t0.getTime() + seconds * 1000);
const vmId = 'vm-1';
const settings: CompressionAttemptSettings = { coroutines: 1, rateLimitMBps: 0, minimumFreeStorage: 1, timeoutSeconds: 600 };
const spec = deciderSpecification(backupCompressionDecider);
const sideFiles: CompressionSideFile[] = [{ volumeId: 'v1', file: 'vm-1/b1/b1/v1.qcow2', sideFile: 'vm-1/b1/b1/v1.qcow2.zside', sideBytes: 1000, sideInode: '42', originalBytes: 5000 }];

const request = (backupId: string, over: Partial<RequestBackupCommand['data']> = {}): RequestBackupCommand => ({
  type: 'RequestBackup',
  data: {
    backupId,
    vmId,
    jobId: `job-${backupId}`,
    chainSize: 8,
    isolated: false,
    quiesce: false,
    intervalType: 'MANUAL',
    name: null,
    description: null,
    volumes: [{ volumeId: 'v1', target: 'vda', path: '/images/a.qcow2', format: 'qcow2', virtualSizeBytes: 1 << 30 }],
    fullOnly: false,
    offeringId: 'o',
    repositoryId: 'r',
    hostId: 'h1',
    at: t0,
    ...over,
  },
});

const stateOf = (history: DomainEvent[]): BackupCompressionState => fold(backupCompressionDecider, history);

/** The VM's stream as the backup chain decider writes it: `backupId` requested (and completed unless told). */
function backup(history: DomainEvent[], backupId: string, complete = true): DomainEvent[] {
  const chain = stateOf(history).chain;
  const requested = backupChainDecider.decide(request(backupId), chain);
  if (!complete) return [...history, ...requested];
  const after = requested.reduce(backupChainDecider.evolve, chain);
  const type = (requested[0] as Extract<BackupChainEvent, { type: 'BackupRequested' }>).data.type;
  const completed = backupChainDecider.decide({ type: 'CompleteBackup', data: { backupId, type, fullReason: null, volumes: [], checkpointXml: '<domaincheckpoint/>', at: t0 } }, after);
  return [...history, ...requested, ...completed];
}

/** Applies a command to the history and returns the longer history. */
function then(history: DomainEvent[], command: Parameters<typeof backupCompressionDecider.decide>[0]): DomainEvent[] {
  return [...history, ...backupCompressionDecider.decide(command, stateOf(history))];
}

const schedule = (backupId = 'b1', seconds = 0) => ({ type: 'ScheduleCompression' as const, data: { jobId: `start-${backupId}`, backupId, vmId, zoneId: 'z1', library: 'zstd' as const, at: at(seconds) } });
const start = (jobId = 'start-b1', seconds = 1, hostId = 'h1') => ({ type: 'StartCompressionAttempt' as const, data: { jobId, hostId, settings, at: at(seconds) } });
const wrote = (attempt = 1, jobId = 'start-b1', seconds = 10) => ({
  type: 'CompleteCompressionAttempt' as const,
  data: { jobId, attempt, hostId: 'h1', outcome: { kind: 'sideFilesWritten' as const, compressionType: 'zstd' as const, volumes: sideFiles, finalizingJobId: 'final-b1' }, at: at(seconds) },
});
const finalized = (attempt = 1, seconds = 20) => ({
  type: 'CompleteCompressionAttempt' as const,
  data: { jobId: 'final-b1', attempt, hostId: 'h1', outcome: { kind: 'finalized' as const, volumes: [{ volumeId: 'v1', compressedBytes: 1000, uncompressedBytes: 5000 }] }, at: at(seconds) },
});
const fail = (attempt: number, seconds: number, maxRetries = 2, jobId = 'start-b1') => ({
  type: 'FailCompressionAttempt' as const,
  data: { jobId, attempt, hostId: 'h1', reason: `attempt ${attempt} broke`, maxRetries, retryIntervalMs: 60_000, at: at(seconds) },
});

describe('backup compression decider', () => {
  const completed = backup([], 'b1');
  const scheduled = then(completed, schedule());
  const running = then(scheduled, start());
  const sidesWritten = then(running, wrote());

  it('schedules a Starting job once a backup completed, and only once', () => {
    spec.given(completed).when(schedule()).then([
      { type: 'CompressionJobScheduled', data: { jobId: 'start-b1', backupId: 'b1', vmId, zoneId: 'z1', type: 'Starting', library: 'zstd', scheduledAt: t0.toISOString(), sideFiles: [] } },
    ]);
    spec.given(scheduled).when(schedule('b1', 5)).thenNothingHappens();
  });

  it('refuses to schedule a backup that did not complete', () => {
    spec.given(backup([], 'b1', false)).when(schedule()).thenThrows('not_found', 'backupid');
    spec.given([]).when(schedule('nope')).thenThrows('not_found', 'backupid');
  });

  it('starts an attempt of a due job on the host it is given, with a deadline from the timeout', () => {
    spec.given(scheduled).when(start('start-b1', 3, 'h2')).then([
      {
        type: 'CompressionStarted',
        data: { jobId: 'start-b1', backupId: 'b1', type: 'Starting', attempt: 1, hostId: 'h2', startedAt: at(3).toISOString(), deadline: at(603).toISOString(), settings },
      },
    ]);
  });

  it('does not start a job that runs already, or one that is not due yet', () => {
    spec.given(running).when(start('start-b1', 2)).thenThrows('conflict');
    const retrying = then(running, fail(1, 5));
    spec.given(retrying).when(start('start-b1', 30)).thenThrows('conflict'); // retry due at 65 s
    spec.given(retrying).when(start('start-b1', 65)).then([expect.objectContaining({ type: 'CompressionStarted', data: expect.objectContaining({ attempt: 2 }) })] as unknown as DomainEvent[]);
    spec.given(scheduled).when(start('nope')).thenThrows('not_found', 'id');
  });

  it('a Starting job that wrote its side files schedules the Finalizing job with them', () => {
    spec.given(running).when(wrote()).then([
      { type: 'CompressionSideFilesWritten', data: { jobId: 'start-b1', backupId: 'b1', attempt: 1, hostId: 'h1', compressionType: 'zstd', volumes: sideFiles, writtenAt: at(10).toISOString() } },
      { type: 'CompressionJobScheduled', data: { jobId: 'final-b1', backupId: 'b1', vmId, zoneId: 'z1', type: 'Finalizing', library: 'zstd', scheduledAt: at(10).toISOString(), sideFiles } },
    ]);
  });

  it('ignores a repeated or stale report', () => {
    spec.given(sidesWritten).when(wrote()).thenNothingHappens();
    spec.given(running).when(wrote(2)).thenNothingHappens();
    spec.given(running).when(fail(2, 5)).thenNothingHappens();
    spec.given(then(running, fail(1, 5))).when(wrote(1)).thenNothingHappens(); // the attempt was already failed (e.g. lapsed)
  });

  it('refuses an outcome of the wrong kind', () => {
    spec.given(running).when({ ...finalized(), data: { ...finalized().data, jobId: 'start-b1' } }).thenThrows('invalid');
  });

  it('retries a failed attempt after the retry interval, at most max.job.retries times, then gives up', () => {
    let h = running;
    h = then(h, fail(1, 5));
    expect(h[h.length - 1]).toMatchObject({ type: 'CompressionAttemptFailed', data: { attempt: 1, retryAt: at(65).toISOString(), reason: 'attempt 1 broke' } });
    h = then(then(h, start('start-b1', 65)), fail(2, 70));
    expect(h[h.length - 1]).toMatchObject({ type: 'CompressionAttemptFailed', data: { attempt: 2, retryAt: at(130).toISOString() } });
    h = then(h, start('start-b1', 130));
    spec.given(h).when(fail(3, 140)).then([
      { type: 'CompressionAttemptFailed', data: { jobId: 'start-b1', backupId: 'b1', type: 'Starting', attempt: 3, hostId: 'h1', reason: 'attempt 3 broke', failedAt: at(140).toISOString(), retryAt: null } },
      { type: 'CompressionFailed', data: { jobId: 'start-b1', backupId: 'b1', type: 'Starting', reason: '3 attempt(s) failed; the last: attempt 3 broke', failedAt: at(140).toISOString() } },
    ]);
    const gaveUp = then(h, fail(3, 140));
    spec.given(gaveUp).when(start('start-b1', 500)).thenThrows('conflict');
    expect(stateOf(gaveUp).jobs['start-b1']).toMatchObject({ status: 'Failed', attempts: 3 });
  });

  it('with max.job.retries 0 the first failure is final', () => {
    spec.given(running).when(fail(1, 5, 0)).then([expect.objectContaining({ type: 'CompressionAttemptFailed' }), expect.objectContaining({ type: 'CompressionFailed' })] as unknown as DomainEvent[]);
  });

  describe('chain safety', () => {
    it('no Finalizing swap while a backup of the VM runs; it may start once the backup is done', () => {
      const withBackup = backup(sidesWritten, 'b2', false);
      spec.given(withBackup).when(start('final-b1', 11)).thenThrows('conflict');
      const done = backupChainDecider.decide({ type: 'CompleteBackup', data: { backupId: 'b2', type: 'INCREMENTAL', fullReason: null, volumes: [], checkpointXml: '<c/>', at: t0 } }, stateOf(withBackup).chain);
      spec.given([...withBackup, ...done]).when(start('final-b1', 12)).then([expect.objectContaining({ type: 'CompressionStarted', data: expect.objectContaining({ type: 'Finalizing', attempt: 1 }) })] as unknown as DomainEvent[]);
    });

    it('no Finalizing swap while a restore or a quick restore consolidation reads the backup', () => {
      const restore = backupChainDecider.decide(
        {
          type: 'RequestRestore',
          data: { restoreId: 'r1', jobId: 'j', vmId, backupId: 'b1', kind: 'volume', quick: true, targetVmId: 'vm-2', hostId: 'h1', volumeIds: [], domainName: 'd', newVmName: null, destinations: [{ volumeId: 'v1', path: '/x' }], backupParameter: 'backupid', at: t0 },
        },
        stateOf(sidesWritten).chain,
      );
      const restoring = [...sidesWritten, ...restore];
      spec.given(restoring).when(start('final-b1', 11)).thenThrows('conflict');
      const restored = backupChainDecider.decide({ type: 'CompleteRestore', data: { restoreId: 'r1', disks: [], consolidation: { consolidationJobId: 'c1', domainName: 'd' }, at: t0 } }, stateOf(restoring).chain);
      const consolidating = [...restoring, ...restored];
      expect(() => backupCompressionDecider.decide(start('final-b1', 12), stateOf(consolidating))).toThrow(/consolidating/);
      const consolidated = backupChainDecider.decide({ type: 'CompleteConsolidation', data: { restoreId: 'r1', at: t0 } }, stateOf(consolidating).chain);
      spec.given([...consolidating, ...consolidated]).when(start('final-b1', 13)).then([expect.objectContaining({ type: 'CompressionStarted' })] as unknown as DomainEvent[]);
    });

    it('no new backup starts while a Finalizing attempt swaps files; it may once the swap ended either way', () => {
      const swapping = then(sidesWritten, start('final-b1', 11));
      expect(stateOf(swapping).chain.swapping).toEqual({ b1: 'final-b1' });
      expect(() => backupChainDecider.decide(request('b2'), stateOf(swapping).chain)).toThrow(DomainError);
      expect(() => backupChainDecider.decide(request('b2'), stateOf(swapping).chain)).toThrow(/being swapped in/);
      const swapped = then(swapping, finalized());
      expect(backupChainDecider.decide(request('b2'), stateOf(swapped).chain)).toHaveLength(1);
      const failedSwap = then(swapping, fail(1, 12, 2, 'final-b1'));
      expect(backupChainDecider.decide(request('b2'), stateOf(failedSwap).chain)).toHaveLength(1);
    });

    it('a Starting job may run while a backup of the VM runs (it only reads completed files)', () => {
      spec.given(backup(scheduled, 'b2', false)).when(start()).then([expect.objectContaining({ type: 'CompressionStarted' })] as unknown as DomainEvent[]);
    });
  });

  it('finalizing marks the job done with the compressed and original sizes', () => {
    spec.given(then(sidesWritten, start('final-b1', 11))).when(finalized()).then([
      { type: 'CompressionFinalized', data: { jobId: 'final-b1', backupId: 'b1', attempt: 1, hostId: 'h1', volumes: [{ volumeId: 'v1', compressedBytes: 1000, uncompressedBytes: 5000 }], finalizedAt: at(20).toISOString() } },
    ]);
  });

  describe('cancellation (deleteBackup)', () => {
    const cancel = (seconds = 30) => ({ type: 'CancelCompression' as const, data: { backupId: 'b1', reason: 'backup deleted', at: at(seconds) } });

    it('cancels a scheduled job at once; it never starts', () => {
      spec.given(scheduled).when(cancel()).then([{ type: 'CompressionCancelled', data: { backupId: 'b1', reason: 'backup deleted', cancelledJobIds: ['start-b1'], stoppingJobIds: [], cancelledAt: at(30).toISOString() } }]);
      const cancelled = then(scheduled, cancel());
      spec.given(cancelled).when(start()).thenThrows('conflict');
      expect(stateOf(cancelled).jobs['start-b1'].status).toBe('Cancelled');
      spec.given(cancelled).when(schedule()).thenNothingHappens();
    });

    it('asks a running job to stop: it ends with its attempt (no retry, no Finalizing) and holds its place until then', () => {
      spec.given(running).when(cancel()).then([{ type: 'CompressionCancelled', data: { backupId: 'b1', reason: 'backup deleted', cancelledJobIds: [], stoppingJobIds: ['start-b1'], cancelledAt: at(30).toISOString() } }]);
      const stopping = then(running, cancel());
      expect(compressionTouchesFiles(stateOf(stopping), 'b1')).toBe(true);
      spec.given(stopping).when(cancel(31)).thenNothingHappens();
      spec.given(stopping).when(fail(1, 32)).then([
        { type: 'CompressionJobStopped', data: { jobId: 'start-b1', backupId: 'b1', type: 'Starting', attempt: 1, outcome: 'failed', detail: 'attempt 1 broke', stoppedAt: at(32).toISOString() } },
      ]);
      spec.given(stopping).when(wrote(1, 'start-b1', 33)).then([expect.objectContaining({ type: 'CompressionJobStopped', data: expect.objectContaining({ outcome: 'succeeded' }) })] as unknown as DomainEvent[]);
      const stopped = then(stopping, wrote(1, 'start-b1', 33));
      expect(compressionTouchesFiles(stateOf(stopped), 'b1')).toBe(false);
      expect(stateOf(stopped).jobs['final-b1']).toBeUndefined();
    });

    it('a cancelled swap keeps the swap lock until its host reports', () => {
      const stopping = then(then(sidesWritten, start('final-b1', 11)), cancel());
      expect(stateOf(stopping).chain.swapping).toEqual({ b1: 'final-b1' });
      const stopped = then(stopping, finalized(1, 40));
      expect(stateOf(stopped).chain.swapping).toEqual({});
    });

    it('does nothing when nothing is pending', () => {
      spec.given(completed).when(cancel()).thenNothingHappens();
      spec.given(then(then(sidesWritten, start('final-b1', 11)), finalized())).when(cancel()).thenNothingHappens();
    });
  });

  describe('side files left behind', () => {
    const cancel = (seconds = 30) => ({ type: 'CancelCompression' as const, data: { backupId: 'b1', reason: 'backup deleted', at: at(seconds) } });
    const discarded = (jobId: string, seconds = 50) => ({ type: 'RecordSideFilesDiscarded' as const, data: { jobId, hostId: 'h2', removed: ['vm-1/b1/b1/v1.qcow2.zside'], at: at(seconds) } });
    const left = (history: DomainEvent[], jobId: string) => sideFilesLeftBehind(stateOf(history).jobs[jobId]);
    const finalizingFailed = then(then(sidesWritten, start('final-b1', 11)), fail(1, 12, 0, 'final-b1'));

    it('a Finalizing job that failed for good, or was cancelled, leaves the Starting job\'s side files', () => {
      expect(stateOf(finalizingFailed).jobs['final-b1'].status).toBe('Failed');
      expect(left(finalizingFailed, 'final-b1')).toBe(true);
      expect(left(then(sidesWritten, cancel()), 'final-b1')).toBe(true); // scheduled, never ran: the side files are there
      expect(left(then(then(sidesWritten, start('final-b1', 11)), finalized(1, 40)), 'final-b1')).toBe(false); // swapped in
    });

    it('a Starting job leaves files only when an attempt ran and the job did not hand them on', () => {
      expect(left(then(scheduled, cancel()), 'start-b1')).toBe(false); // never ran
      expect(left(then(then(running, cancel()), wrote(1, 'start-b1', 33)), 'start-b1')).toBe(true); // completed after the cancel
      expect(left(then(running, fail(1, 5, 0)), 'start-b1')).toBe(true); // e.g. a lapsed attempt of a dead agent
      expect(left(sidesWritten, 'start-b1')).toBe(false); // Done: the Finalizing job owns them
      expect(left(then(running, fail(1, 5, 2)), 'start-b1')).toBe(false); // a retry will come
      expect(left(running, 'start-b1')).toBe(false);
    });

    it('records the discard once; the job no longer leaves anything', () => {
      spec.given(finalizingFailed).when(discarded('final-b1')).then([
        { type: 'CompressionSideFilesDiscarded', data: { jobId: 'final-b1', backupId: 'b1', type: 'Finalizing', hostId: 'h2', removed: ['vm-1/b1/b1/v1.qcow2.zside'], discardedAt: at(50).toISOString() } },
      ]);
      const done = then(finalizingFailed, discarded('final-b1'));
      expect(left(done, 'final-b1')).toBe(false);
      spec.given(done).when(discarded('final-b1', 60)).thenNothingHappens();
      expect(stateOf(done).chain.swapping).toEqual({});
    });

    it('refuses a discard for a job that may still use its side files, or an unknown job', () => {
      spec.given(sidesWritten).when(discarded('start-b1')).thenThrows('conflict');
      spec.given(then(sidesWritten, start('final-b1', 11))).when(discarded('final-b1')).thenThrows('conflict');
      spec.given(sidesWritten).when(discarded('nope')).thenThrows('not_found');
    });
  });
});
