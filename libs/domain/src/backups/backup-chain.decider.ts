import { Decider } from '../decider';
import { conflict, DomainError, invalid, notFound } from '../domain-error';
import { BackupChainEvent, BackupType, BackupVolume, FullReason, IntervalType } from './backup-chain.events';

/**
 * Every chain of one VM lives in one stream (`vmBackups-<vmId>`), so "one backup of a VM at a time" and
 * every FULL-or-INCREMENTAL decision are serialized by the stream's revision.
 */
export interface ChainLink {
  backupId: string;
  checkpointName: string;
  volumes: BackupVolume[];
}

export interface PendingBackup {
  backupId: string;
  type: BackupType;
  chainId: string;
  isolated: boolean;
  checkpointName: string;
  volumes: BackupVolume[];
}

export interface BackupChainState {
  /** Completed backups of the current chain, base first; empty when the next backup must be full. */
  chain: ChainLink[];
  chainId: string | null;
  /** Why the current chain cannot continue, when it cannot (finished, restored, untrusted...). */
  endedBecause: FullReason | null;
  pending: PendingBackup | null;
  hasCompletedBackup: boolean;
}

export interface RequestBackupCommand {
  type: 'RequestBackup';
  data: {
    backupId: string;
    vmId: string;
    jobId: string;
    /** Effective chain size: the offering's backupchainsize, else the zone's backup.chain.size. */
    chainSize: number;
    isolated: boolean;
    quiesce: boolean;
    intervalType: IntervalType;
    name: string | null;
    description: string | null;
    volumes: BackupVolume[];
    /** Set when some disk cannot be backed up incrementally (raw or not qcow2). */
    fullOnly: boolean;
    offeringId: string;
    repositoryId: string;
    hostId: string;
    at: Date;
  };
}

export type BackupChainCommand =
  | RequestBackupCommand
  | { type: 'StartBackup'; data: { backupId: string; hostId: string; at: Date } }
  | {
      type: 'CompleteBackup';
      data: {
        backupId: string;
        type: BackupType;
        fullReason: FullReason | null;
        volumes: { volumeId: string; storedBytes: number; virtualSizeBytes: number }[];
        checkpointXml: string;
        at: Date;
      };
    }
  | { type: 'FailBackup'; data: { backupId: string; reason: string; cleanedUp: string[]; checkpointTrusted: boolean; at: Date } }
  | { type: 'FinishChain'; data: { vmId: string; reason: string; at: Date } };

/** Disks are "the same" when the same volumes sit on the same targets with the same sizes. */
function sameDisks(a: BackupVolume[], b: BackupVolume[]): boolean {
  const key = (v: BackupVolume) => `${v.volumeId}|${v.target}|${v.virtualSizeBytes}`;
  const ka = a.map(key).sort();
  const kb = b.map(key).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i]);
}

/** FULL or INCREMENTAL, and the reason a full was chosen. Pure and exported for tests and listings. */
export function chooseBackupType(state: BackupChainState, cmd: RequestBackupCommand['data']): { type: BackupType; fullReason: FullReason | null } {
  if (cmd.isolated) return { type: 'FULL', fullReason: 'isolated' };
  if (!state.hasCompletedBackup) return { type: 'FULL', fullReason: 'first backup' };
  if (state.chain.length === 0) return { type: 'FULL', fullReason: state.endedBecause ?? 'chain finished' };
  if (cmd.fullOnly) return { type: 'FULL', fullReason: 'full-backup-only disks' };
  if (cmd.chainSize >= 1 && state.chain.length >= cmd.chainSize) return { type: 'FULL', fullReason: 'chain size reached' };
  if (!sameDisks(state.chain[state.chain.length - 1].volumes, cmd.volumes)) return { type: 'FULL', fullReason: 'disks changed' };
  return { type: 'INCREMENTAL', fullReason: null };
}

function requirePending(state: BackupChainState, backupId: string): PendingBackup {
  if (!state.pending || state.pending.backupId !== backupId) throw notFound(`backup ${backupId} is not running`, 'id');
  return state.pending;
}

export const backupChainDecider: Decider<BackupChainCommand, BackupChainEvent, BackupChainState> = {
  initialState: () => ({ chain: [], chainId: null, endedBecause: null, pending: null, hasCompletedBackup: false }),

  decide(command, state) {
    switch (command.type) {
      case 'RequestBackup': {
        const d = command.data;
        if (state.pending) {
          if (state.pending.backupId === d.backupId) return [];
          throw conflict(`another backup of this virtual machine (${state.pending.backupId}) is still running`);
        }
        if (d.volumes.length === 0) throw invalid('the virtual machine has no disks to back up', 'virtualmachineid');
        const { type, fullReason } = chooseBackupType(state, d);
        const parent = type === 'INCREMENTAL' ? state.chain[state.chain.length - 1] : null;
        return [
          {
            type: 'BackupRequested',
            data: {
              backupId: d.backupId,
              vmId: d.vmId,
              jobId: d.jobId,
              chainId: type === 'FULL' ? d.backupId : state.chainId!,
              parentBackupId: parent?.backupId ?? null,
              chainPosition: type === 'FULL' ? 0 : state.chain.length,
              type,
              fullReason,
              checkpointName: `strata-${d.backupId}`,
              parentCheckpointName: parent?.checkpointName ?? null,
              isolated: d.isolated,
              quiesce: d.quiesce,
              intervalType: d.intervalType,
              name: d.name,
              description: d.description,
              volumes: d.volumes,
              offeringId: d.offeringId,
              repositoryId: d.repositoryId,
              hostId: d.hostId,
              requestedAt: d.at.toISOString(),
            },
          },
        ];
      }
      case 'StartBackup': {
        requirePending(state, command.data.backupId);
        return [{ type: 'BackupStarted', data: { backupId: command.data.backupId, hostId: command.data.hostId, startedAt: command.data.at.toISOString() } }];
      }
      case 'CompleteBackup': {
        const d = command.data;
        if (!state.pending || state.pending.backupId !== d.backupId) return []; // already finished: a retried report
        const pending = state.pending;
        if (pending.type === 'FULL' && d.type === 'INCREMENTAL') throw new DomainError('invalid', `backup ${d.backupId} was requested full`);
        // A host that could not trust the parent's bitmap took a full instead: it starts its own chain.
        const chainId = d.type === 'FULL' ? d.backupId : pending.chainId;
        return [
          {
            type: 'BackupCompleted',
            data: { backupId: d.backupId, type: d.type, fullReason: d.type === 'FULL' && pending.type === 'INCREMENTAL' ? d.fullReason : null, chainId, volumes: d.volumes, checkpointXml: d.checkpointXml, completedAt: d.at.toISOString() },
          },
        ];
      }
      case 'FailBackup': {
        const d = command.data;
        if (!state.pending || state.pending.backupId !== d.backupId) return [];
        return [{ type: 'BackupFailed', data: { backupId: d.backupId, reason: d.reason, cleanedUp: d.cleanedUp, checkpointTrusted: d.checkpointTrusted, failedAt: d.at.toISOString() } }];
      }
      case 'FinishChain': {
        if (state.chain.length === 0 || !state.chainId) return [];
        return [{ type: 'ChainEnded', data: { vmId: command.data.vmId, chainId: state.chainId, reason: command.data.reason, endedAt: command.data.at.toISOString() } }];
      }
    }
  },

  evolve(state, event) {
    switch (event.type) {
      case 'BackupRequested': {
        const d = event.data;
        return { ...state, pending: { backupId: d.backupId, type: d.type, chainId: d.chainId, isolated: d.isolated, checkpointName: d.checkpointName, volumes: d.volumes } };
      }
      case 'BackupStarted':
        return state;
      case 'BackupCompleted': {
        const pending = state.pending;
        if (!pending || pending.backupId !== event.data.backupId) return state;
        const link: ChainLink = { backupId: pending.backupId, checkpointName: pending.checkpointName, volumes: pending.volumes };
        if (pending.isolated) return { ...state, pending: null, hasCompletedBackup: true };
        if (event.data.type === 'FULL') return { ...state, pending: null, hasCompletedBackup: true, chain: [link], chainId: event.data.chainId, endedBecause: null };
        return { ...state, pending: null, hasCompletedBackup: true, chain: [...state.chain, link] };
      }
      case 'BackupFailed':
        // A failure that leaves the parent's bitmap in doubt ends the chain: the next backup is full.
        return event.data.checkpointTrusted ? { ...state, pending: null } : { ...state, pending: null, chain: [], endedBecause: 'checkpoint or bitmap not trusted' };
      case 'ChainEnded':
        return { ...state, chain: [], endedBecause: 'chain finished' };
    }
  },
};
