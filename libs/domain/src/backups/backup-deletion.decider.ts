import { Decider, DomainEvent } from '../decider';
import { conflict, DomainError, notFound } from '../domain-error';
import { activeCompressionJobs, backupCompressionDecider, BackupCompressionState, compressionTouchesFiles } from '../compression/backup-compression.decider';
import { BackupCompleted, BackupFailed, BackupRequested, IntervalType } from './backup-chain.events';
import { BackupChainState } from './backup-chain.decider';
import { removalsOf } from './backup-removal';
import { BACKUP_REMOVAL_EVENT_TYPES, BackupRemovalEvent, RemovalMode } from './backup-removal.events';

/**
 * Deleting backups, decided on the VM's stream (`vmBackups-<vmId>`) with everything that reads its files:
 * the chain (running backup, restores, consolidations) and compression. The rule (see
 * backup-removal.events.ts): a leaf is dropped, a backup others depend on is merged into each child;
 * either only when nothing reads or changes the files involved, one removal per VM at a time; until
 * then the backup is Removed and waits. `AdvanceRemovals` is asked after every event that may end an
 * obstacle (the dispatcher does it), and a finished removal starts the next one in the same decision.
 */
export interface BackupRecord {
  backupId: string;
  chainId: string;
  volumeIds: string[];
  checkpointName: string;
  intervalType: IntervalType;
  isolated: boolean;
  requestedAt: string;
  completedAt: string | null;
  status: 'pending' | 'completed' | 'failed' | 'expunged';
  storedBytes: number;
}

export interface RemovalEntry {
  backupId: string;
  forced: boolean;
  reason: string;
  status: 'waiting' | 'running' | 'failed';
  /** Removal attempts started so far. */
  starts: number;
  /** The running attempt's id. */
  removalJobId: string | null;
  /** Async jobs that end with this removal (requests that started it at once). */
  jobIds: string[];
  lastError: string | null;
}

export interface BackupDeletionState {
  compression: BackupCompressionState;
  backups: Record<string, BackupRecord>;
  /** Removed backups whose files are not gone yet, in the order they were deleted. */
  removals: Record<string, RemovalEntry>;
  order: string[];
}

export type RemovalOutcome =
  | { kind: 'dropped'; freedBytes: number; filesMissing: boolean }
  | { kind: 'merged'; volumes: { backupId: string; volumeId: string; bytesBefore: number; bytesAfter: number }[]; removedBytes: number };

export type BackupDeletionCommand =
  | { type: 'DeleteBackup'; data: { backupId: string; jobId: string; forced: boolean; reason: string; at: Date } }
  /** removeVirtualMachineFromBackupOffering with forced: every backup of the VM. */
  | { type: 'DeleteAllBackups'; data: { jobId: string; forced: boolean; reason: string; at: Date } }
  /** After a backup of a schedule completed: its backups beyond `maxBackups` (0 = keep all) go, oldest first. */
  | { type: 'ApplyRetention'; data: { intervalType: IntervalType; maxBackups: number; jobId: string; reason: string; at: Date } }
  | { type: 'AdvanceRemovals'; data: { at: Date } }
  | { type: 'CompleteRemoval'; data: { backupId: string; removalJobId: string; outcome: RemovalOutcome; at: Date } }
  | { type: 'FailRemoval'; data: { backupId: string; removalJobId: string; reason: string; at: Date } };

const isRemovalEvent = (e: DomainEvent): e is BackupRemovalEvent => (BACKUP_REMOVAL_EVENT_TYPES as readonly string[]).includes(e.type);

export const chainOfDeletion = (state: BackupDeletionState): BackupChainState => state.compression.chain;

/** The backups whose parent `backupId` is (their files are backed by its files). */
export function childrenOf(chain: BackupChainState, backupId: string): string[] {
  return Object.entries(chain.completed)
    .filter(([, b]) => b.parentBackupId === backupId)
    .map(([id]) => id)
    .sort();
}

/** What keeps the removal of `backupId` from starting now, in words; empty: it can start. */
export function removalObstacles(state: BackupDeletionState, backupId: string): string[] {
  const chain = chainOfDeletion(state);
  const out: string[] = [];
  const running = removalsOf(chain).running;
  if (running && running.backupId !== backupId) out.push(`the removal of backup ${running.backupId} runs`);
  if (chain.pending) out.push(`backup ${chain.pending.backupId} of the virtual machine is running`);
  const children = childrenOf(chain, backupId);
  const affected = [backupId, ...children];
  for (const [restoreId, r] of Object.entries(chain.restores ?? {})) {
    if (r.readsBackupIds.some((id) => affected.includes(id))) out.push(r.phase === 'consolidating' ? `quick restore ${restoreId} is consolidating from it` : `restore ${restoreId} reads it`);
  }
  for (const id of affected) if ((chain.swapping ?? {})[id]) out.push(`the compressed files of backup ${id} are being swapped in`);
  if (compressionTouchesFiles(state.compression, backupId)) out.push(`a compression of backup ${backupId} is stopping`);
  for (const child of children) {
    // A running compression reads the child; a Finalizing one waiting would swap back a file backed by the removed backup.
    const busy = activeCompressionJobs(state.compression, child).filter((j) => j.status === 'Running' || j.type === 'Finalizing');
    if (busy.length) out.push(`backup ${child}, which is merged into, is being compressed`);
  }
  return out;
}

function requestDeletion(state: BackupDeletionState, backupId: string, d: { jobId: string; forced: boolean; reason: string; at: Date }, parameter: string | null): DomainEvent[] {
  const b = state.backups[backupId];
  const at = d.at.toISOString();
  if (!b || b.status === 'expunged') {
    if (parameter === null) return [];
    throw notFound(`backup ${backupId} does not exist`, parameter);
  }
  if (b.status === 'pending') throw conflict(`backup ${backupId} is still running; delete it once it has finished`);
  if (b.status === 'failed') {
    // A failed backup left no files (its attempt removed them): it is gone at once.
    return [
      { type: 'BackupDeletionRequested', data: { backupId, jobId: d.jobId, forced: d.forced, reason: d.reason, waitingFor: [], requestedAt: at } },
      { type: 'BackupExpunged', data: { backupId, reason: `${d.reason}; the failed backup had no files`, filesMissing: false, freedBytes: 0, expungedAt: at } },
    ];
  }
  const entry = state.removals[backupId];
  if (entry && (entry.status === 'running' || (entry.status === 'waiting' && entry.forced === d.forced))) return [];
  // Compression of a deleted backup stops: scheduled jobs end, a running one is asked to stop.
  const cancel = backupCompressionDecider.decide({ type: 'CancelCompression', data: { backupId, reason: `backup deleted (${d.reason})`, at: d.at } }, state.compression);
  const requested: DomainEvent = { type: 'BackupDeletionRequested', data: { backupId, jobId: d.jobId, forced: d.forced, reason: d.reason, waitingFor: [], requestedAt: at } };
  return [requested, ...cancel];
}

/** The first waiting removal that can start now (one per VM at a time), as its start event. */
function nextRemoval(state: BackupDeletionState, at: Date): DomainEvent[] {
  if (removalsOf(chainOfDeletion(state)).running) return [];
  for (const id of state.order) {
    const entry = state.removals[id];
    if (!entry || entry.status !== 'waiting') continue;
    if (removalObstacles(state, id).length) continue;
    const chain = chainOfDeletion(state);
    const children = childrenOf(chain, id);
    const mode: RemovalMode = children.length ? 'merge' : 'drop';
    return [
      {
        type: 'BackupRemovalStarted',
        data: { backupId: id, removalJobId: `${id}-r${entry.starts + 1}`, mode, intoBackupIds: children, newParentBackupId: chain.completed[id]?.parentBackupId ?? null, forced: entry.forced, startedAt: at.toISOString() },
      },
    ];
  }
  return [];
}

/** Decides `events`, then folds them and asks for the next removal: one decision, one append. */
function thenAdvance(state: BackupDeletionState, events: DomainEvent[], at: Date): DomainEvent[] {
  if (events.length === 0) return [];
  const after = events.reduce((s, e) => backupDeletionDecider.evolve(s, e), state);
  const next = nextRemoval(after, at);
  if (next.length === 0) return events;
  // A request that starts at once: its removal waits for nothing. One that waits says what for.
  return [...events, ...next];
}

/** Marks each request with what it waits for (after the decision: what the first start did not cover). */
function withWaitingFor(state: BackupDeletionState, events: DomainEvent[]): DomainEvent[] {
  const after = events.reduce((s, e) => backupDeletionDecider.evolve(s, e), state);
  return events.map((e) => {
    if (e.type !== 'BackupDeletionRequested') return e;
    const data = e.data as { backupId: string };
    const entry = after.removals[data.backupId];
    const waitingFor = entry && entry.status === 'waiting' ? removalObstacles(after, data.backupId) : [];
    return { ...e, data: { ...(e.data as object), waitingFor: entry && entry.status === 'waiting' && waitingFor.length === 0 ? ['the removals requested before it'] : waitingFor } };
  });
}

export const backupDeletionDecider: Decider<BackupDeletionCommand, DomainEvent, BackupDeletionState> = {
  initialState: () => ({ compression: backupCompressionDecider.initialState(), backups: {}, removals: {}, order: [] }),

  decide(command, state) {
    switch (command.type) {
      case 'DeleteBackup': {
        const d = command.data;
        return withWaitingFor(state, thenAdvance(state, requestDeletion(state, d.backupId, d, 'id'), d.at));
      }
      case 'DeleteAllBackups': {
        const d = command.data;
        const ids = Object.values(state.backups)
          .filter((b) => b.status === 'completed' || b.status === 'failed')
          .sort((a, b) => a.requestedAt.localeCompare(b.requestedAt))
          .map((b) => b.backupId);
        let s = state;
        const events: DomainEvent[] = [];
        for (const id of ids) {
          if (state.removals[id]?.status === 'running') continue;
          const e = requestDeletion(s, id, d, null);
          s = e.reduce((x, ev) => backupDeletionDecider.evolve(x, ev), s);
          events.push(...e);
        }
        return withWaitingFor(state, thenAdvance(state, events, d.at));
      }
      case 'ApplyRetention': {
        const d = command.data;
        if (!Number.isInteger(d.maxBackups) || d.maxBackups < 0) throw new DomainError('invalid', 'maxbackups must be a whole number, 0 or more', 'maxbackups');
        if (d.maxBackups === 0) return [];
        const kept = Object.values(state.backups)
          .filter((b) => b.status === 'completed' && b.intervalType === d.intervalType && !state.removals[b.backupId])
          .sort((a, b) => (a.completedAt ?? '').localeCompare(b.completedAt ?? '') || a.requestedAt.localeCompare(b.requestedAt));
        const excess = kept.slice(0, Math.max(0, kept.length - d.maxBackups));
        let s = state;
        const events: DomainEvent[] = [];
        for (const b of excess) {
          const e = requestDeletion(s, b.backupId, { ...d, forced: false }, null);
          s = e.reduce((x, ev) => backupDeletionDecider.evolve(x, ev), s);
          events.push(...e);
        }
        return withWaitingFor(state, thenAdvance(state, events, d.at));
      }
      case 'AdvanceRemovals':
        return nextRemoval(state, command.data.at);
      case 'CompleteRemoval': {
        const d = command.data;
        const entry = state.removals[d.backupId];
        if (!entry || entry.status !== 'running' || entry.removalJobId !== d.removalJobId) return []; // a repeated report
        const running = removalsOf(chainOfDeletion(state)).running;
        const chain = chainOfDeletion(state);
        const at = d.at.toISOString();
        const events: DomainEvent[] = [];
        if (d.outcome.kind === 'merged') {
          const into = childrenOf(chain, d.backupId);
          const bytesAfter = d.outcome.volumes.reduce((n, v) => n + v.bytesAfter, 0);
          const bytesBefore = d.outcome.removedBytes + d.outcome.volumes.reduce((n, v) => n + v.bytesBefore, 0);
          events.push({
            type: 'BackupsMerged',
            data: { backupId: d.backupId, intoBackupIds: running?.affected.slice(1) ?? into, newParentBackupId: chain.completed[d.backupId]?.parentBackupId ?? null, volumes: d.outcome.volumes, bytesBefore, bytesAfter, mergedAt: at },
          });
          events.push({ type: 'BackupExpunged', data: { backupId: d.backupId, reason: `${entry.reason}; merged into ${(running?.affected.slice(1) ?? into).join(', ')}`, filesMissing: false, freedBytes: Math.max(0, bytesBefore - bytesAfter), expungedAt: at } });
        } else {
          const reason = d.outcome.filesMissing ? `${entry.reason}; its files were already missing from the repository (forced)` : entry.reason;
          events.push({ type: 'BackupExpunged', data: { backupId: d.backupId, reason, filesMissing: d.outcome.filesMissing, freedBytes: d.outcome.freedBytes, expungedAt: at } });
        }
        return thenAdvance(state, events, d.at);
      }
      case 'FailRemoval': {
        const d = command.data;
        const entry = state.removals[d.backupId];
        if (!entry || entry.status !== 'running' || entry.removalJobId !== d.removalJobId) return [];
        return thenAdvance(state, [{ type: 'BackupRemovalFailed', data: { backupId: d.backupId, removalJobId: d.removalJobId, reason: d.reason, failedAt: d.at.toISOString() } }], d.at);
      }
    }
  },

  evolve(state, event) {
    const next: BackupDeletionState = { ...state, compression: backupCompressionDecider.evolve(state.compression, event) };
    switch (event.type) {
      case 'BackupRequested': {
        const d = event.data as BackupRequested['data'];
        const record: BackupRecord = {
          backupId: d.backupId,
          chainId: d.chainId,
          volumeIds: d.volumes.map((v) => v.volumeId),
          checkpointName: d.checkpointName,
          intervalType: d.intervalType,
          isolated: d.isolated,
          requestedAt: d.requestedAt,
          completedAt: null,
          status: 'pending',
          storedBytes: 0,
        };
        return { ...next, backups: { ...next.backups, [d.backupId]: record } };
      }
      case 'BackupCompleted': {
        const d = event.data as BackupCompleted['data'];
        const b = next.backups[d.backupId];
        if (!b) return next;
        return { ...next, backups: { ...next.backups, [d.backupId]: { ...b, chainId: d.chainId, status: 'completed', completedAt: d.completedAt, storedBytes: d.volumes.reduce((n, v) => n + v.storedBytes, 0) } } };
      }
      case 'BackupFailed': {
        const d = event.data as BackupFailed['data'];
        const b = next.backups[d.backupId];
        return b ? { ...next, backups: { ...next.backups, [d.backupId]: { ...b, status: 'failed' } } } : next;
      }
      default:
        break;
    }
    if (!isRemovalEvent(event)) return next;
    switch (event.type) {
      case 'BackupDeletionRequested': {
        const d = event.data;
        const existing = next.removals[d.backupId];
        const entry: RemovalEntry = existing
          ? { ...existing, forced: d.forced || existing.forced, reason: d.reason, status: existing.status === 'running' ? 'running' : 'waiting', jobIds: [...existing.jobIds, d.jobId] }
          : { backupId: d.backupId, forced: d.forced, reason: d.reason, status: 'waiting', starts: 0, removalJobId: null, jobIds: [d.jobId], lastError: null };
        return { ...next, removals: { ...next.removals, [d.backupId]: entry }, order: next.order.includes(d.backupId) ? next.order : [...next.order, d.backupId] };
      }
      case 'BackupRemovalStarted': {
        const e = next.removals[event.data.backupId];
        return e ? { ...next, removals: { ...next.removals, [e.backupId]: { ...e, status: 'running', starts: e.starts + 1, removalJobId: event.data.removalJobId } } } : next;
      }
      case 'BackupsMerged': {
        // The children now hold what they read through the removed backup.
        const backups = { ...next.backups };
        for (const v of event.data.volumes) if (backups[v.backupId]) backups[v.backupId] = { ...backups[v.backupId], storedBytes: backups[v.backupId].storedBytes - v.bytesBefore + v.bytesAfter };
        return { ...next, backups };
      }
      case 'BackupExpunged': {
        const id = event.data.backupId;
        const { [id]: _done, ...removals } = next.removals;
        const b = next.backups[id];
        return { ...next, removals, order: next.order.filter((x) => x !== id), backups: b ? { ...next.backups, [id]: { ...b, status: 'expunged' } } : next.backups };
      }
      case 'BackupRemovalFailed': {
        const e = next.removals[event.data.backupId];
        return e ? { ...next, removals: { ...next.removals, [e.backupId]: { ...e, status: 'failed', removalJobId: null, lastError: event.data.reason, jobIds: [] } } } : next;
      }
    }
    return next;
  },
};
