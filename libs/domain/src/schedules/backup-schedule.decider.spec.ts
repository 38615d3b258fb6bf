import { deciderSpecification } from '../testing/decider-specification';
import { backupScheduleDecider, BackupScheduleCommand, checkTimeZone, cronPattern, parseSchedule } from './backup-schedule.decider';

const at = new Date('2026-11-22T10:00:00Z');
const spec = deciderSpecification(backupScheduleDecider);
const create = (over: Partial<Extract<BackupScheduleCommand, { type: 'CreateSchedule' }>['data']> = {}): BackupScheduleCommand => ({
  type: 'CreateSchedule',
  data: { scheduleId: 's1', vmId: 'vm', userId: 'u', intervalType: 'DAILY', schedule: '30:02', timezone: 'Europe/Berlin', maxBackups: 3, quiesce: false, isolated: false, at, ...over },
});
const created = { type: 'BackupScheduleCreated' as const, data: { scheduleId: 's1', vmId: 'vm', userId: 'u', intervalType: 'DAILY' as const, schedule: '30:02', timezone: 'Europe/Berlin', maxBackups: 3, quiesce: false, isolated: false, cron: '30 2 * * *', version: 1, createdAt: at.toISOString() } };

describe('backup schedules', () => {
  it('builds cron patterns from CloudStack schedules', () => {
    expect(cronPattern('HOURLY', '05')).toBe('5 * * * *');
    expect(cronPattern('DAILY', '30:02')).toBe('30 2 * * *');
    expect(cronPattern('WEEKLY', '00:23:1')).toBe('0 23 * * 0'); // 1 = Sunday
    expect(cronPattern('WEEKLY', '15:04:7')).toBe('15 4 * * 6');
    expect(cronPattern('MONTHLY', '45:01:28')).toBe('45 1 28 * *');
  });

  it.each([
    ['HOURLY', '60'],
    ['HOURLY', '10:02'],
    ['DAILY', '10'],
    ['DAILY', '10:24'],
    ['WEEKLY', '10:02:8'],
    ['WEEKLY', '10:02:0'],
    ['MONTHLY', '10:02:29'],
    ['MONTHLY', 'aa:bb:cc'],
    ['DAILY', ''],
  ] as const)('refuses %s schedule "%s", naming schedule', (type, schedule) => {
    expect(() => parseSchedule(type, schedule)).toThrow(expect.objectContaining({ kind: 'invalid', parameter: 'schedule' }));
  });

  it('checks IANA time zones, naming timezone', () => {
    expect(checkTimeZone('UTC')).toBe('UTC');
    expect(checkTimeZone('America/Sao_Paulo')).toBe('America/Sao_Paulo');
    for (const bad of ['Mars/Olympus', '', 'Europe/Berlin; rm', '../etc']) expect(() => checkTimeZone(bad)).toThrow(expect.objectContaining({ parameter: 'timezone' }));
  });

  it('creates a schedule with its cron pattern', () => {
    spec.given([]).when(create()).then([created]);
  });

  it('a second schedule of the same interval type updates the first (CloudStack)', () => {
    spec
      .given([created])
      .when(create({ scheduleId: 's2', schedule: '00:03', maxBackups: 5 }))
      .then([{ type: 'BackupScheduleUpdated', data: { ...created.data, schedule: '00:03', cron: '0 3 * * *', maxBackups: 5, version: 2, updatedAt: at.toISOString() } }]);
  });

  it('updates fields, keeping the schedule and interval type consistent', () => {
    spec.given([created]).when({ type: 'UpdateSchedule', data: { scheduleId: 's1', changes: { intervalType: 'HOURLY' }, at } }).thenThrows('invalid', 'schedule');
    spec.given([created]).when({ type: 'UpdateSchedule', data: { scheduleId: 's1', changes: { timezone: 'Nowhere/Land' }, at } }).thenThrows('invalid', 'timezone');
    spec.given([created]).when({ type: 'UpdateSchedule', data: { scheduleId: 's1', changes: { maxBackups: -1 }, at } }).thenThrows('invalid', 'maxbackups');
    spec.given([created]).when({ type: 'UpdateSchedule', data: { scheduleId: 'nope', changes: {}, at } }).thenThrows('not_found', 'id');
    spec
      .given([created])
      .when({ type: 'UpdateSchedule', data: { scheduleId: 's1', changes: { intervalType: 'HOURLY', schedule: '07' }, at } })
      .then([{ type: 'BackupScheduleUpdated', data: { ...created.data, intervalType: 'HOURLY', schedule: '07', cron: '7 * * * *', version: 2, updatedAt: at.toISOString() } }]);
  });

  it('deletes; deleting again does nothing', () => {
    spec.given([created]).when({ type: 'DeleteSchedule', data: { scheduleId: 's1', at } }).then([{ type: 'BackupScheduleDeleted', data: { scheduleId: 's1', vmId: 'vm', intervalType: 'DAILY', deletedAt: at.toISOString() } }]);
    spec.given([]).when({ type: 'DeleteSchedule', data: { scheduleId: 's1', at } }).thenNothingHappens();
  });
});
