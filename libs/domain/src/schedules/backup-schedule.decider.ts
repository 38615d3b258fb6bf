import { Decider, DomainEvent } from '../decider';
import { invalid, notFound } from '../domain-error';
import { IntervalType } from '../backups/backup-chain.events';

/**
 * Backup schedules of one VM (stream `vmSchedules-<vmId>`), CloudStack style: at most one schedule per
 * interval type (creating one for a type that has one updates it, as CloudStack does). `schedule` is
 * HOURLY `MM`, DAILY `MM:HH`, WEEKLY `MM:HH:DD` (DD 1-7, 1 = Sunday), MONTHLY `MM:HH:DD` (DD 1-28), read
 * in the IANA `timezone`. The management plane runs each one as a BullMQ job scheduler (cron pattern and
 * time zone below), so several instances never fire one schedule twice.
 */
export type ScheduleIntervalType = Exclude<IntervalType, 'MANUAL'>;
export const SCHEDULE_INTERVAL_TYPES: readonly ScheduleIntervalType[] = ['HOURLY', 'DAILY', 'WEEKLY', 'MONTHLY'];

export interface BackupScheduleSpec {
  intervalType: ScheduleIntervalType;
  schedule: string;
  timezone: string;
  /** Backups of this schedule kept; older ones are deleted after each scheduled backup. 0 = keep all. */
  maxBackups: number;
  quiesce: boolean;
  isolated: boolean;
}

export interface BackupSchedule extends BackupScheduleSpec {
  scheduleId: string;
  vmId: string;
  userId: string;
  /** 1 when created, +1 per update. Informational: a fire always runs with the schedule as it is when it fires. */
  version: number;
  /** BullMQ cron pattern of `schedule` (minute hour day-of-month month day-of-week). */
  cron: string;
  createdAt: string;
}

export type BackupScheduleCreated = DomainEvent<'BackupScheduleCreated', BackupSchedule>;
export type BackupScheduleUpdated = DomainEvent<'BackupScheduleUpdated', BackupSchedule & { updatedAt: string }>;
export type BackupScheduleDeleted = DomainEvent<'BackupScheduleDeleted', { scheduleId: string; vmId: string; intervalType: ScheduleIntervalType; deletedAt: string }>;
export type BackupScheduleEvent = BackupScheduleCreated | BackupScheduleUpdated | BackupScheduleDeleted;

export type BackupScheduleCommand =
  | { type: 'CreateSchedule'; data: BackupScheduleSpec & { scheduleId: string; vmId: string; userId: string; at: Date } }
  | { type: 'UpdateSchedule'; data: { scheduleId: string; changes: Partial<BackupScheduleSpec>; at: Date } }
  | { type: 'DeleteSchedule'; data: { scheduleId: string; at: Date } };

export interface BackupSchedulesState {
  schedules: Record<string, BackupSchedule>;
}

const two = /^\d{1,2}$/;

/** Minute, hour and day of `schedule`, checked against its interval type; 431 naming `schedule` when wrong. */
export function parseSchedule(intervalType: ScheduleIntervalType, schedule: string): { minute: number; hour: number | null; day: number | null } {
  const parts = schedule.trim().split(':');
  const want = { HOURLY: 1, DAILY: 2, WEEKLY: 3, MONTHLY: 3 }[intervalType];
  const shape = { HOURLY: 'MM', DAILY: 'MM:HH', WEEKLY: 'MM:HH:DD', MONTHLY: 'MM:HH:DD' }[intervalType];
  if (parts.length !== want || parts.some((p) => !two.test(p))) throw invalid(`schedule "${schedule}" does not fit ${intervalType}: expected ${shape}`, 'schedule');
  const [minute, hour, day] = parts.map(Number);
  if (minute > 59) throw invalid(`schedule "${schedule}": minute ${minute} is not 0-59`, 'schedule');
  if (hour !== undefined && hour > 23) throw invalid(`schedule "${schedule}": hour ${hour} is not 0-23`, 'schedule');
  if (intervalType === 'WEEKLY' && (day < 1 || day > 7)) throw invalid(`schedule "${schedule}": day of week ${day} is not 1-7 (1 = Sunday)`, 'schedule');
  if (intervalType === 'MONTHLY' && (day < 1 || day > 28)) throw invalid(`schedule "${schedule}": day of month ${day} is not 1-28`, 'schedule');
  return { minute, hour: hour ?? null, day: day ?? null };
}

/** The cron pattern (BullMQ `pattern`, evaluated in the schedule's time zone). */
export function cronPattern(intervalType: ScheduleIntervalType, schedule: string): string {
  const { minute, hour, day } = parseSchedule(intervalType, schedule);
  switch (intervalType) {
    case 'HOURLY':
      return `${minute} * * * *`;
    case 'DAILY':
      return `${minute} ${hour} * * *`;
    case 'WEEKLY':
      return `${minute} ${hour} * * ${day! - 1}`;
    case 'MONTHLY':
      return `${minute} ${hour} ${day} * *`;
  }
}

/** An IANA time zone name the runtime knows (`Europe/Berlin`, `UTC`); 431 naming `timezone` otherwise. */
export function checkTimeZone(timezone: string): string {
  const tz = timezone.trim();
  if (tz === '' || tz.length > 64 || !/^[A-Za-z0-9_+\-/]+$/.test(tz)) throw invalid(`timezone "${timezone}" is not an IANA time zone name (e.g. Europe/Berlin, UTC)`, 'timezone');
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
  } catch {
    throw invalid(`timezone "${timezone}" is not an IANA time zone name (e.g. Europe/Berlin, UTC)`, 'timezone');
  }
  return tz;
}

function checkSpec(spec: BackupScheduleSpec): BackupScheduleSpec & { cron: string } {
  if (!SCHEDULE_INTERVAL_TYPES.includes(spec.intervalType)) throw invalid(`intervaltype must be one of ${SCHEDULE_INTERVAL_TYPES.join(', ')}`, 'intervaltype');
  const cron = cronPattern(spec.intervalType, spec.schedule);
  const timezone = checkTimeZone(spec.timezone);
  if (!Number.isInteger(spec.maxBackups) || spec.maxBackups < 0) throw invalid('maxbackups must be a whole number, 0 (keep all) or more', 'maxbackups');
  return { intervalType: spec.intervalType, schedule: spec.schedule.trim(), timezone, maxBackups: spec.maxBackups, quiesce: spec.quiesce, isolated: spec.isolated, cron };
}

export const backupScheduleDecider: Decider<BackupScheduleCommand, BackupScheduleEvent, BackupSchedulesState> = {
  initialState: () => ({ schedules: {} }),

  decide(command, state) {
    switch (command.type) {
      case 'CreateSchedule': {
        const d = command.data;
        const spec = checkSpec(d);
        const existing = Object.values(state.schedules).find((s) => s.intervalType === spec.intervalType);
        if (existing) {
          const updated = { ...existing, ...spec, version: existing.version + 1 };
          if (sameSpec(existing, updated)) return [];
          return [{ type: 'BackupScheduleUpdated', data: { ...updated, updatedAt: d.at.toISOString() } }];
        }
        if (state.schedules[d.scheduleId]) return [];
        return [{ type: 'BackupScheduleCreated', data: { ...spec, scheduleId: d.scheduleId, vmId: d.vmId, userId: d.userId, version: 1, createdAt: d.at.toISOString() } }];
      }
      case 'UpdateSchedule': {
        const d = command.data;
        const existing = state.schedules[d.scheduleId];
        if (!existing) throw notFound(`backup schedule ${d.scheduleId} does not exist`, 'id');
        const defined = Object.fromEntries(Object.entries(d.changes).filter(([, v]) => v !== undefined)) as Partial<BackupScheduleSpec>;
        const merged = { ...existing, ...defined };
        // Changing the interval type alone leaves a schedule that no longer fits: both must fit together.
        const spec = checkSpec(merged);
        const other = Object.values(state.schedules).find((s) => s.intervalType === spec.intervalType && s.scheduleId !== d.scheduleId);
        if (other) throw invalid(`the virtual machine has a ${spec.intervalType} schedule already (${other.scheduleId})`, 'intervaltype');
        const updated = { ...existing, ...spec, version: existing.version + 1 };
        if (sameSpec(existing, updated)) return [];
        return [{ type: 'BackupScheduleUpdated', data: { ...updated, updatedAt: d.at.toISOString() } }];
      }
      case 'DeleteSchedule': {
        const existing = state.schedules[command.data.scheduleId];
        if (!existing) return [];
        return [{ type: 'BackupScheduleDeleted', data: { scheduleId: existing.scheduleId, vmId: existing.vmId, intervalType: existing.intervalType, deletedAt: command.data.at.toISOString() } }];
      }
    }
  },

  evolve(state, event) {
    switch (event.type) {
      case 'BackupScheduleCreated':
        return { schedules: { ...state.schedules, [event.data.scheduleId]: event.data } };
      case 'BackupScheduleUpdated': {
        const { updatedAt: _u, ...schedule } = event.data;
        return { schedules: { ...state.schedules, [schedule.scheduleId]: schedule } };
      }
      case 'BackupScheduleDeleted': {
        const { [event.data.scheduleId]: _gone, ...rest } = state.schedules;
        return { schedules: rest };
      }
    }
  },
};

function sameSpec(a: BackupScheduleSpec, b: BackupScheduleSpec): boolean {
  return a.intervalType === b.intervalType && a.schedule === b.schedule && a.timezone === b.timezone && a.maxBackups === b.maxBackups && a.quiesce === b.quiesce && a.isolated === b.isolated;
}
