import { fold } from '../decider';
import { deciderSpecification } from '../testing/decider-specification';
import { AsyncJobCreated, AsyncJobFailed, AsyncJobProgressed, AsyncJobSucceeded, asyncJobDecider } from './async-job.decider';

const at = new Date('2026-11-22T10:00:00Z');
const done = new Date('2026-11-22T10:07:00Z');
const jobId = '8e0a2c4e-6a8c-4e0a-9c4e-6a8c0e2a4c01';
const userId = '2d4f6a8c-0e1b-4c3d-9e5f-7a9b1c3d5e01';
const offeringId = '5e2a7c91-3d4b-4f6a-8b1c-2d3e4f5a6b01';
const spec = deciderSpecification(asyncJobDecider);

const create = {
  type: 'CreateAsyncJob' as const,
  data: { jobId, command: 'importBackupOffering', userId, instanceType: 'BackupOffering', instanceId: offeringId, at },
};
const progress = (p: number, bytes?: { bytesDone: number; bytesTotal: number }) => ({ type: 'ReportProgress' as const, data: { jobId, progress: p, ...bytes } });
const succeed = { type: 'SucceedAsyncJob' as const, data: { jobId, resultType: 'object' as const, result: { backupoffering: { id: offeringId } }, at: done } };
const fail = { type: 'FailAsyncJob' as const, data: { jobId, errorCode: 530, errorText: 'zone has no backup repository', at: done } };

const created: AsyncJobCreated = {
  type: 'AsyncJobCreated',
  data: { jobId, command: 'importBackupOffering', userId, instanceType: 'BackupOffering', instanceId: offeringId, createdAt: at.toISOString() },
};
const progressed = (p: number, bytesDone: number | null = null, bytesTotal: number | null = null): AsyncJobProgressed => ({
  type: 'AsyncJobProgressed',
  data: { jobId, progress: p, bytesDone, bytesTotal },
});
const succeeded: AsyncJobSucceeded = { type: 'AsyncJobSucceeded', data: { jobId, resultType: 'object', result: { backupoffering: { id: offeringId } }, completedAt: done.toISOString() } };
const failed: AsyncJobFailed = { type: 'AsyncJobFailed', data: { jobId, errorCode: 530, errorText: 'zone has no backup repository', completedAt: done.toISOString() } };

describe('async job decider', () => {
  it('creates a job', () => spec.given([]).when(create).then([created]));

  it('creates a job without an instance', () => {
    const bare = { ...create, data: { ...create.data, instanceType: null, instanceId: null } };
    spec.given([]).when(bare).then([{ ...created, data: { ...created.data, instanceType: null, instanceId: null } }]);
  });

  it('refuses to create a job twice', () => spec.given([created]).when(create).thenThrows('conflict'));

  it('starts pending at 0 %', () => expect(fold(asyncJobDecider, [created])).toEqual({ status: 'pending', progress: 0 }));

  describe('progress', () => {
    it('moves forward', () => spec.given([created]).when(progress(10)).then([progressed(10)]));

    it('keeps moving forward', () => spec.given([created, progressed(10)]).when(progress(40)).then([progressed(40)]));

    it('does not move back', () => spec.given([created, progressed(40)]).when(progress(10)).thenNothingHappens());

    it('does not repeat itself', () => spec.given([created, progressed(40)]).when(progress(40)).thenNothingHappens());

    it('0 % on a new job decides nothing', () => spec.given([created]).when(progress(0)).thenNothingHappens());

    it('is a whole number, clamped to 0..100', () => {
      spec.given([created]).when(progress(12.9)).then([progressed(12)]);
      spec.given([created]).when(progress(250)).then([progressed(100)]);
      spec.given([created, progressed(5)]).when(progress(-20)).thenNothingHappens();
    });

    it('ignores a progress that is not a number', () => spec.given([created, progressed(5)]).when(progress(Number.NaN)).thenNothingHappens());

    it('reports bytes even when the percentage stays put', () =>
      spec.given([created, progressed(40, 400, 1000)]).when(progress(40, { bytesDone: 404, bytesTotal: 1000 })).then([progressed(40, 404, 1000)]));

    it('with bytes, still does not move the percentage back', () =>
      spec.given([created, progressed(40, 400, 1000)]).when(progress(30, { bytesDone: 410, bytesTotal: 1000 })).then([progressed(40, 410, 1000)]));

    it('is ignored for an unknown job', () => spec.given([]).when(progress(50)).thenNothingHappens());

    it('is remembered in the state', () => expect(fold(asyncJobDecider, [created, progressed(10), progressed(60)]).progress).toBe(60));
  });

  describe('finishing', () => {
    it('succeeds once', () => spec.given([created, progressed(50)]).when(succeed).then([succeeded]));

    it('fails once', () => spec.given([created, progressed(50)]).when(fail).then([failed]));

    it('a success sets progress to 100 %', () => expect(fold(asyncJobDecider, [created, progressed(50), succeeded])).toEqual({ status: 'succeeded', progress: 100 }));

    it('a failure keeps the progress reached', () => expect(fold(asyncJobDecider, [created, progressed(50), failed])).toEqual({ status: 'failed', progress: 50 }));

    it.each([
      ['succeeded', succeeded],
      ['failed', failed],
    ] as const)('a %s job ignores later progress, success and failure', (_status, finished) => {
      spec.given([created, finished]).when(progress(99)).thenNothingHappens();
      spec.given([created, finished]).when(progress(99, { bytesDone: 1, bytesTotal: 2 })).thenNothingHappens();
      spec.given([created, finished]).when(succeed).thenNothingHappens();
      spec.given([created, finished]).when(fail).thenNothingHappens();
    });

    it('an unknown job cannot be finished', () => {
      spec.given([]).when(succeed).thenNothingHappens();
      spec.given([]).when(fail).thenNothingHappens();
    });
  });
});
