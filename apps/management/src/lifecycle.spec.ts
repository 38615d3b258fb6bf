import { checkTimeZone, cronPattern, ScheduleIntervalType } from '@strata/domain';
import { fireTimeOf, nextFireAfter, repeatOptionsOf, SCHEDULE_TEST_EVERY_ENV, scheduleSchedulerId } from './lifecycle';

/** The fires of a CloudStack schedule after `from`, as the BullMQ job scheduler computes them. */
function fires(intervalType: ScheduleIntervalType, schedule: string, timezone: string, from: string, count: number): string[] {
  const s = { cron: cronPattern(intervalType, schedule), timezone: checkTimeZone(timezone) };
  const out: string[] = [];
  let at = new Date(from);
  for (let i = 0; i < count; i++) {
    at = nextFireAfter(s, at);
    out.push(at.toISOString());
  }
  return out;
}

/*
 * 2026: Europe/Berlin changes at 01:00 UTC on Sunday 29 March (02:00 CET -> 03:00 CEST) and Sunday 25
 * October (03:00 CEST -> 02:00 CET); America/New_York on Sunday 8 March at 07:00 UTC (02:00 EST -> 03:00
 * EDT) and Sunday 1 November at 06:00 UTC (02:00 EDT -> 01:00 EST).
 */
describe('schedule fire times in the schedule time zone (BullMQ repeat strategy)', () => {
  it('DAILY in Europe/Berlin: same local time across the spring change; a time the change skips fires once, an hour later', () => {
    expect(fires('DAILY', '30:02', 'Europe/Berlin', '2026-03-27T12:00:00Z', 3)).toEqual([
      '2026-03-28T01:30:00.000Z', // 02:30 CET
      '2026-03-29T01:30:00.000Z', // 02:30 does not exist that night: 03:30 CEST, once
      '2026-03-30T00:30:00.000Z', // 02:30 CEST
    ]);
  });

  it('DAILY in Europe/Berlin: a local time that happens twice in the autumn change fires once', () => {
    expect(fires('DAILY', '30:02', 'Europe/Berlin', '2026-10-23T12:00:00Z', 3)).toEqual([
      '2026-10-24T00:30:00.000Z', // 02:30 CEST
      '2026-10-25T00:30:00.000Z', // the first 02:30 (CEST); not again at 01:30Z (the second, CET)
      '2026-10-26T01:30:00.000Z', // 02:30 CET
    ]);
  });

  it('HOURLY in Europe/Berlin fires every real hour through both changes', () => {
    expect(fires('HOURLY', '05', 'Europe/Berlin', '2026-10-24T23:30:00Z', 3)).toEqual(['2026-10-25T00:05:00.000Z', '2026-10-25T01:05:00.000Z', '2026-10-25T02:05:00.000Z']);
    expect(fires('HOURLY', '05', 'Europe/Berlin', '2026-03-28T23:30:00Z', 3)).toEqual(['2026-03-29T00:05:00.000Z', '2026-03-29T01:05:00.000Z', '2026-03-29T02:05:00.000Z']);
  });

  it('DAILY in America/New_York keeps 09:00 local across the spring change and fires 01:30 once in the autumn', () => {
    expect(fires('DAILY', '00:09', 'America/New_York', '2026-03-06T20:00:00Z', 3)).toEqual([
      '2026-03-07T14:00:00.000Z', // 09:00 EST
      '2026-03-08T13:00:00.000Z', // 09:00 EDT
      '2026-03-09T13:00:00.000Z',
    ]);
    expect(fires('DAILY', '30:01', 'America/New_York', '2026-10-31T12:00:00Z', 2)).toEqual([
      '2026-11-01T05:30:00.000Z', // the first 01:30 (EDT) only
      '2026-11-02T06:30:00.000Z', // 01:30 EST
    ]);
  });

  it('WEEKLY (1 = Sunday) and MONTHLY follow the local calendar day, not the UTC one', () => {
    // Sunday 23:00 in New York is Monday in UTC, at 03:00 before the change and 04:00 after it.
    expect(fires('WEEKLY', '00:23:1', 'America/New_York', '2026-10-21T12:00:00Z', 3)).toEqual(['2026-10-26T03:00:00.000Z', '2026-11-02T04:00:00.000Z', '2026-11-09T04:00:00.000Z']);
    // The 28th at 01:45 in Berlin is the 27th in UTC in summer.
    expect(fires('MONTHLY', '45:01:28', 'Europe/Berlin', '2026-03-01T00:00:00Z', 2)).toEqual(['2026-03-28T00:45:00.000Z', '2026-04-27T23:45:00.000Z']);
  });

  it('the time zone is what the job scheduler gets: the same schedule in UTC fires at another instant', () => {
    const s = { cron: cronPattern('DAILY', '00:09'), timezone: 'America/New_York' };
    expect(repeatOptionsOf(s, {})).toEqual({ pattern: '0 9 * * *', tz: 'America/New_York' });
    expect(nextFireAfter({ ...s, timezone: 'UTC' }, new Date('2026-03-06T20:00:00Z')).toISOString()).toBe('2026-03-07T09:00:00.000Z');
    // Tests only: a fixed interval instead of the cron time.
    expect(repeatOptionsOf(s, { [SCHEDULE_TEST_EVERY_ENV]: '1500' })).toEqual({ every: 1500 });
    expect(repeatOptionsOf(s, { [SCHEDULE_TEST_EVERY_ENV]: 'soon' })).toEqual({ pattern: '0 9 * * *', tz: 'America/New_York' });
  });

  it('every time zone the API accepts is one the job scheduler can compute fires in (a refused one would stall the dispatcher)', () => {
    const zones = [...Intl.supportedValuesOf('timeZone'), 'UTC', 'europe/berlin', 'US/Eastern', 'Etc/GMT+5'];
    const failing = zones.filter((tz) => {
      try {
        return nextFireAfter({ cron: cronPattern('DAILY', '30:02'), timezone: checkTimeZone(tz) }, new Date('2026-03-29T00:00:00Z')).getTime() <= Date.parse('2026-03-29T00:00:00Z');
      } catch {
        return true;
      }
    });
    expect(zones.length).toBeGreaterThan(300);
    expect(failing).toEqual([]);
  });
});

describe('fireTimeOf', () => {
  it("reads the due time from the job scheduler's job id, not the job's creation time", () => {
    const created = new Date('2026-03-06T09:00:00Z');
    expect(fireTimeOf(`repeat:${scheduleSchedulerId('5e2a7c91-3d4b-4f6a-8b1c-2d3e4f5a6b01')}:1772874000000`, created).toISOString()).toBe('2026-03-07T09:00:00.000Z');
    expect(fireTimeOf('some-other-job', created)).toBe(created);
  });
});
