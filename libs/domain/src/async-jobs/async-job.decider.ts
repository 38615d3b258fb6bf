import { Decider, DomainEvent } from '../decider';
import { conflict } from '../domain-error';

/**
 * CloudStack-style async jobs (`asyncJob-<jobId>`): what queryAsyncJobResult and listAsyncJobs answer.
 * A finished job never changes again, so a retried worker that finishes it twice appends nothing.
 */
export type AsyncJobCreated = DomainEvent<
  'AsyncJobCreated',
  { jobId: string; command: string; userId: string; instanceType: string | null; instanceId: string | null; createdAt: string }
>;
export type AsyncJobProgressed = DomainEvent<'AsyncJobProgressed', { jobId: string; progress: number; bytesDone: number | null; bytesTotal: number | null }>;
export type AsyncJobSucceeded = DomainEvent<'AsyncJobSucceeded', { jobId: string; resultType: 'object' | 'success'; result: Record<string, unknown>; completedAt: string }>;
export type AsyncJobFailed = DomainEvent<'AsyncJobFailed', { jobId: string; errorCode: number; errorText: string; completedAt: string }>;
export type AsyncJobEvent = AsyncJobCreated | AsyncJobProgressed | AsyncJobSucceeded | AsyncJobFailed;

export type AsyncJobCommand =
  | { type: 'CreateAsyncJob'; data: { jobId: string; command: string; userId: string; instanceType: string | null; instanceId: string | null; at: Date } }
  | { type: 'ReportProgress'; data: { jobId: string; progress: number; bytesDone?: number; bytesTotal?: number } }
  | { type: 'SucceedAsyncJob'; data: { jobId: string; resultType: 'object' | 'success'; result: Record<string, unknown>; at: Date } }
  | { type: 'FailAsyncJob'; data: { jobId: string; errorCode: number; errorText: string; at: Date } };

export interface AsyncJobState {
  status: 'absent' | 'pending' | 'succeeded' | 'failed';
  progress: number;
}

export const asyncJobDecider: Decider<AsyncJobCommand, AsyncJobEvent, AsyncJobState> = {
  initialState: () => ({ status: 'absent', progress: 0 }),
  decide(command, state) {
    switch (command.type) {
      case 'CreateAsyncJob': {
        if (state.status !== 'absent') throw conflict(`async job ${command.data.jobId} already exists`);
        const { at, ...data } = command.data;
        return [{ type: 'AsyncJobCreated', data: { ...data, createdAt: at.toISOString() } }];
      }
      case 'ReportProgress': {
        if (state.status !== 'pending') return [];
        // Progress only moves forward: a lower (or NaN) percentage keeps the one reached, even when bytes are reported.
        const reported = Number.isNaN(command.data.progress) ? 0 : Math.max(0, Math.min(100, Math.floor(command.data.progress)));
        const progress = Math.max(state.progress, reported);
        if (progress === state.progress && command.data.bytesDone === undefined) return [];
        return [
          {
            type: 'AsyncJobProgressed',
            data: { jobId: command.data.jobId, progress, bytesDone: command.data.bytesDone ?? null, bytesTotal: command.data.bytesTotal ?? null },
          },
        ];
      }
      case 'SucceedAsyncJob': {
        if (state.status !== 'pending') return [];
        const { at, ...data } = command.data;
        return [{ type: 'AsyncJobSucceeded', data: { ...data, completedAt: at.toISOString() } }];
      }
      case 'FailAsyncJob': {
        if (state.status !== 'pending') return [];
        const { at, ...data } = command.data;
        return [{ type: 'AsyncJobFailed', data: { ...data, completedAt: at.toISOString() } }];
      }
    }
  },
  evolve(state, event) {
    switch (event.type) {
      case 'AsyncJobCreated':
        return { status: 'pending', progress: 0 };
      case 'AsyncJobProgressed':
        return { ...state, progress: event.data.progress };
      case 'AsyncJobSucceeded':
        return { status: 'succeeded', progress: 100 };
      case 'AsyncJobFailed':
        return { ...state, status: 'failed' };
    }
  },
};
