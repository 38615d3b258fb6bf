import { Decider, DomainEvent } from '../decider';
import { conflict, DomainError, invalid, notFound } from '../domain-error';
import { BackupChainEvent, BackupType, BackupVolume, FullReason, IntervalType } from './backup-chain.events';
import { RestoredDisk, RestoreKind } from './restore.events';
import { SwapLock, swapLockAfter } from '../compression/compression-swap-lock';
import { chainAfterRemovalEvent, ChainRemovals, removalBlocksBackup, removalBlocksRestore, removalReaders } from './backup-removal';

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
  parentBackupId: string | null;
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
  /** Every backup of the VM that completed (in any chain, isolated or not), with its parent. */
  completed: Record<string, { parentBackupId: string | null; volumeIds: string[] }>;
  /** Restores that run, and quick restores whose VM still reads from the repository (consolidating). */
  restores: Record<string, ActiveRestore>;
  /** Backups whose compressed files a Finalizing compression attempt is swapping in (backup id -> job id): no backup starts meanwhile. */
  swapping: SwapLock;
  /** Deleted (Removed) backups and the removal that runs now (see backup-removal.ts); absent: none. */
  removal?: ChainRemovals;
}

export interface ActiveRestore {
  backupId: string;
  kind: RestoreKind;
  quick: boolean;
  targetVmId: string;
  hostId: string;
  phase: 'restoring' | 'consolidating';
  readsBackupIds: string[];
  /** Set when the restore moves the VM onto `hostId` (see RestoreRequested). */
  movedFromHostId?: string;
}

/**
 * Backups whose files a running restore or a quick-restored VM reads: they may not be deleted, merged or
 * swapped (compression) until the restore ends and the VM's consolidation is done.
 */
export function backupsReadByRestores(state: BackupChainState): Set<string> {
  return new Set(Object.values(state.restores).flatMap((r) => r.readsBackupIds));
}

/**
 * Who reads the VM's chain in a way that forbids swapping (compression) or changing `backupId`'s files
 * now, in words; empty when nobody does. A running backup of the VM reads its chain; restores and
 * quick-restore consolidations read the chain up to the backup they restore.
 */
export function chainReaders(state: BackupChainState, backupId: string): string[] {
  const readers: string[] = [];
  if (state.pending) readers.push(`backup ${state.pending.backupId} of the virtual machine is running`);
  for (const [restoreId, r] of Object.entries(state.restores ?? {})) {
    if (r.readsBackupIds.includes(backupId)) readers.push(r.phase === 'consolidating' ? `quick restore ${restoreId} is still consolidating` : `restore ${restoreId} is running`);
  }
  readers.push(...removalReaders(state, backupId));
  return readers;
}

/** The chain a backup's files need, base first. */
export function chainOf(state: BackupChainState, backupId: string): string[] {
  const out: string[] = [];
  for (let id: string | null = backupId; id !== null && state.completed[id] && !out.includes(id); id = state.completed[id].parentBackupId) out.unshift(id);
  return out;
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
  | { type: 'FinishChain'; data: { vmId: string; reason: string; at: Date } }
  | RequestRestoreCommand
  | { type: 'CompleteRestore'; data: { restoreId: string; disks: RestoredDisk[]; consolidation: { consolidationJobId: string; domainName: string } | null; at: Date } }
  | { type: 'FailRestore'; data: { restoreId: string; reason: string; cleanedUp: string[]; at: Date } }
  | { type: 'CompleteConsolidation'; data: { restoreId: string; at: Date } }
  | { type: 'FailConsolidation'; data: { restoreId: string; reason: string; at: Date } };

export interface RequestRestoreCommand {
  type: 'RequestRestore';
  data: {
    restoreId: string;
    jobId: string;
    vmId: string;
    backupId: string;
    kind: RestoreKind;
    quick: boolean;
    targetVmId: string;
    hostId: string;
    /** Empty: every volume of the backup. */
    volumeIds: string[];
    domainName: string;
    newVmName: string | null;
    destinations: { volumeId: string; path: string }[];
    /** A quick restore of the VM that starts it on `hostId`, away from this host where it is defined. */
    movedFromHostId?: string | null;
    /** A volume restore that starts the stopped target VM on `hostId` once the volume is attached. */
    startVm?: boolean;
    /** The parameter that names the backup in the API command (`id` or `backupid`), for errors. */
    backupParameter: string;
    at: Date;
  };
}

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

function decideRestore(d: RequestRestoreCommand['data'], state: BackupChainState): BackupChainEvent[] {
  if (state.restores[d.restoreId]) return []; // the same request again
  const backup = state.completed[d.backupId];
  if (!backup) {
    if (state.pending?.backupId === d.backupId) throw conflict(`backup ${d.backupId} is not finished yet; restore it once it is BackedUp`);
    throw notFound(`backup ${d.backupId} does not exist or did not complete`, d.backupParameter);
  }
  const reads = chainOf(state, d.backupId);
  const removing = removalBlocksRestore(state, d.backupId, reads);
  if (removing) throw conflict(removing);
  // The reverse of "no swap while the chain is read": a restore never opens a file a Finalizing attempt is renaming.
  const swapping = reads.filter((id) => state.swapping?.[id]);
  if (swapping.length) {
    throw conflict(
      `the compressed files of backup ${swapping.join(', ')} (read by this restore) are being swapped in by compression job ${swapping.map((id) => state.swapping[id]).join(', ')}; restore it again in a few seconds`,
    );
  }
  if (d.movedFromHostId) {
    if (d.kind !== 'vm' || !d.quick) throw invalid('only a quick restore of the virtual machine itself can start it on another host', 'hostid');
    if (d.movedFromHostId === d.hostId) throw new DomainError('invalid', `restore ${d.restoreId} moves the VM onto the host it is already on`);
  }
  if (d.startVm && (d.kind !== 'volume' || !d.quick)) throw invalid('only a quick volume restore starts the virtual machine on a host', 'hostid');
  const volumeIds = d.volumeIds.length ? d.volumeIds : backup.volumeIds;
  const unknown = volumeIds.find((v) => !backup.volumeIds.includes(v));
  if (unknown) throw invalid(`volume ${unknown} is not in backup ${d.backupId}`, 'volumeid');
  const destinations = volumeIds.map((v) => d.destinations.find((x) => x.volumeId === v));
  if (destinations.some((x) => !x)) throw new DomainError('invalid', `restore ${d.restoreId} names no destination for some volume`);
  if (d.kind === 'vm') {
    if (state.pending) throw conflict(`a backup of this virtual machine (${state.pending.backupId}) is running; restore it when the backup is done`);
    const other = Object.entries(state.restores).find(([, r]) => r.kind === 'vm');
    if (other) {
      throw conflict(
        other[1].phase === 'restoring'
          ? `this virtual machine is already being restored (restore ${other[0]})`
          : `this virtual machine still runs from a quick restore that is consolidating (restore ${other[0]}); restore it again when that is done`,
      );
    }
  }
  return [
    {
      type: 'RestoreRequested',
      data: {
        restoreId: d.restoreId,
        jobId: d.jobId,
        vmId: d.vmId,
        backupId: d.backupId,
        kind: d.kind,
        quick: d.quick,
        targetVmId: d.targetVmId,
        hostId: d.hostId,
        volumeIds,
        domainName: d.domainName,
        newVmName: d.newVmName,
        destinations: destinations as { volumeId: string; path: string }[],
        readsBackupIds: reads,
        ...(d.movedFromHostId ? { movedFromHostId: d.movedFromHostId } : {}),
        ...(d.startVm ? { startVm: true as const } : {}),
        requestedAt: d.at.toISOString(),
      },
    },
  ];
}

function requirePending(state: BackupChainState, backupId: string): PendingBackup {
  if (!state.pending || state.pending.backupId !== backupId) throw notFound(`backup ${backupId} is not running`, 'id');
  return state.pending;
}

export const backupChainDecider: Decider<BackupChainCommand, BackupChainEvent, BackupChainState> = {
  initialState: () => ({ chain: [], chainId: null, endedBecause: null, pending: null, hasCompletedBackup: false, completed: {}, restores: {}, swapping: {} }),

  decide(command, state) {
    switch (command.type) {
      case 'RequestBackup': {
        const d = command.data;
        if (state.pending) {
          if (state.pending.backupId === d.backupId) return [];
          throw conflict(`another backup of this virtual machine (${state.pending.backupId}) is still running`);
        }
        const swapping = Object.keys(state.swapping ?? {});
        if (swapping.length) throw conflict(`the compressed files of backup ${swapping.join(', ')} are being swapped in; try again in a few seconds`);
        const removing = removalBlocksBackup(state);
        if (removing) throw conflict(removing);
        const restoring = Object.entries(state.restores).find(([, r]) => r.kind === 'vm' && r.phase === 'restoring');
        if (restoring) throw conflict(`this virtual machine is being restored (restore ${restoring[0]}); back it up when the restore is done`);
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
      case 'RequestRestore':
        return decideRestore(command.data, state);
      case 'CompleteRestore': {
        const d = command.data;
        const r = state.restores[d.restoreId];
        if (!r || r.phase !== 'restoring') return []; // already finished: a retried report
        const events: BackupChainEvent[] = [
          {
            type: 'RestoreCompleted',
            data: {
              restoreId: d.restoreId,
              backupId: r.backupId,
              kind: r.kind,
              quick: r.quick,
              targetVmId: r.targetVmId,
              disks: d.disks,
              ...(r.movedFromHostId ? { movedFromHostId: r.movedFromHostId } : {}),
              completedAt: d.at.toISOString(),
            },
          },
        ];
        if (r.quick) {
          if (!d.consolidation) throw new DomainError('invalid', `quick restore ${d.restoreId} completed without a consolidation to follow`);
          events.push({
            type: 'ConsolidationRequested',
            data: { restoreId: d.restoreId, consolidationJobId: d.consolidation.consolidationJobId, targetVmId: r.targetVmId, hostId: r.hostId, domainName: d.consolidation.domainName, disks: d.disks, requestedAt: d.at.toISOString() },
          });
        }
        return events;
      }
      case 'FailRestore': {
        const d = command.data;
        const r = state.restores[d.restoreId];
        if (!r || r.phase !== 'restoring') return [];
        return [{ type: 'RestoreFailed', data: { restoreId: d.restoreId, backupId: r.backupId, reason: d.reason, cleanedUp: d.cleanedUp, failedAt: d.at.toISOString() } }];
      }
      case 'CompleteConsolidation': {
        const r = state.restores[command.data.restoreId];
        if (!r || r.phase !== 'consolidating') return [];
        return [{ type: 'ConsolidationCompleted', data: { restoreId: command.data.restoreId, completedAt: command.data.at.toISOString() } }];
      }
      case 'FailConsolidation': {
        const r = state.restores[command.data.restoreId];
        if (!r || r.phase !== 'consolidating') return [];
        return [{ type: 'ConsolidationFailed', data: { restoreId: command.data.restoreId, reason: command.data.reason, failedAt: command.data.at.toISOString() } }];
      }
    }
  },

  evolve(state, event) {
    switch (event.type) {
      case 'BackupRequested': {
        const d = event.data;
        return { ...state, pending: { backupId: d.backupId, type: d.type, parentBackupId: d.parentBackupId, chainId: d.chainId, isolated: d.isolated, checkpointName: d.checkpointName, volumes: d.volumes } };
      }
      case 'BackupStarted':
        return state;
      case 'BackupCompleted': {
        const pending = state.pending;
        if (!pending || pending.backupId !== event.data.backupId) return state;
        const link: ChainLink = { backupId: pending.backupId, checkpointName: pending.checkpointName, volumes: pending.volumes };
        const completed = { ...state.completed, [pending.backupId]: { parentBackupId: event.data.type === 'FULL' ? null : pending.parentBackupId, volumeIds: pending.volumes.map((v) => v.volumeId) } };
        if (pending.isolated) return { ...state, completed, pending: null, hasCompletedBackup: true };
        if (event.data.type === 'FULL') return { ...state, completed, pending: null, hasCompletedBackup: true, chain: [link], chainId: event.data.chainId, endedBecause: null };
        return { ...state, completed, pending: null, hasCompletedBackup: true, chain: [...state.chain, link] };
      }
      case 'BackupFailed':
        // A failure that leaves the parent's bitmap in doubt ends the chain: the next backup is full.
        return event.data.checkpointTrusted ? { ...state, pending: null } : { ...state, pending: null, chain: [], endedBecause: 'checkpoint or bitmap not trusted' };
      case 'ChainEnded':
        return { ...state, chain: [], endedBecause: 'chain finished' };
      case 'RestoreRequested': {
        const d = event.data;
        const restores = {
          ...state.restores,
          [d.restoreId]: {
            backupId: d.backupId,
            kind: d.kind,
            quick: d.quick,
            targetVmId: d.targetVmId,
            hostId: d.hostId,
            phase: 'restoring' as const,
            readsBackupIds: d.readsBackupIds,
            ...(d.movedFromHostId ? { movedFromHostId: d.movedFromHostId } : {}),
          },
        };
        // The VM's disks are replaced: its checkpoints no longer describe them, so the next backup is full.
        if (d.kind === 'vm') return { ...state, restores, chain: [], endedBecause: 'restored since last backup' };
        return { ...state, restores };
      }
      case 'RestoreCompleted': {
        const r = state.restores[event.data.restoreId];
        if (!r) return state;
        const { [event.data.restoreId]: _done, ...rest } = state.restores;
        return { ...state, restores: r.quick ? { ...state.restores, [event.data.restoreId]: { ...r, phase: 'consolidating' } } : rest };
      }
      case 'RestoreFailed':
      case 'ConsolidationCompleted': {
        const { [event.data.restoreId]: _gone, ...rest } = state.restores;
        return { ...state, restores: rest };
      }
      case 'ConsolidationRequested':
      case 'ConsolidationFailed':
        return state;
      default:
        // Other deciders' events on this stream (compression): only the swap lock matters here.
        return chainAfterRemovalEvent({ ...state, swapping: swapLockAfter(state.swapping, event as DomainEvent) }, event as DomainEvent);
    }
  },
};
