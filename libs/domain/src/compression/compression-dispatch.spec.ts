import { CompressionHost, planCompressionStarts, RunningCompressionJob, WaitingCompressionJob } from './compression-dispatch';

const now = new Date('2026-11-22T10:00:00Z');
const ago = (s: number) => new Date(now.getTime() - s * 1000);
const hosts: CompressionHost[] = [
  { hostId: 'h1', zoneId: 'z1', up: true },
  { hostId: 'h2', zoneId: 'z1', up: true },
  { hostId: 'h3', zoneId: 'z1', up: true },
  { hostId: 'h9', zoneId: 'z2', up: true },
];
const starting = (n: number, over: Partial<WaitingCompressionJob> = {}): WaitingCompressionJob[] =>
  Array.from({ length: n }, (_, i) => ({ jobId: `s${String(i).padStart(2, '0')}`, type: 'Starting' as const, zoneId: 'z1', preferredHostId: 'h1', scheduledAt: ago(100 - i), ...over }));
const limits = (perHost: number, perZone: number) => ({ perHost: () => perHost, perZone: () => perZone });
const count = (plan: { hostId: string }[]) => plan.reduce<Record<string, number>>((m, p) => ({ ...m, [p.hostId]: (m[p.hostId] ?? 0) + 1 }), {});

describe('planCompressionStarts', () => {
  it('fills the preferred host up to the per-host limit, then the least loaded hosts of the zone', () => {
    const plan = planCompressionStarts(starting(10), [], hosts, limits(2, -1), now);
    expect(count(plan)).toEqual({ h1: 2, h2: 2, h3: 2 });
    expect(plan.slice(0, 2).map((p) => p.jobId)).toEqual(['s00', 's01']); // oldest first
  });

  it('never exceeds the zone limit, counting what runs already', () => {
    const running: RunningCompressionJob[] = [{ jobId: 'r1', type: 'Starting', zoneId: 'z1', hostId: 'h2' }];
    const plan = planCompressionStarts(starting(10), running, hosts, limits(2, 3), now);
    expect(plan).toHaveLength(2);
    expect(count(plan)).toEqual({ h1: 2 });
  });

  it('never exceeds the per-host limit, counting what runs already', () => {
    const running: RunningCompressionJob[] = [
      { jobId: 'r1', type: 'Starting', zoneId: 'z1', hostId: 'h1' },
      { jobId: 'r2', type: 'Starting', zoneId: 'z1', hostId: 'h2' },
    ];
    const single = [{ hostId: 'h1', zoneId: 'z1', up: true }, { hostId: 'h2', zoneId: 'z1', up: true }];
    expect(count(planCompressionStarts(starting(5), running, single, limits(2, -1), now))).toEqual({ h1: 1, h2: 1 });
  });

  it('below 1 means unlimited', () => {
    expect(planCompressionStarts(starting(12), [], [hosts[0]], limits(0, -1), now)).toHaveLength(12);
    expect(planCompressionStarts(starting(12), [], [hosts[0]], limits(-1, 0), now)).toHaveLength(12);
  });

  it('Finalizing jobs ignore both limits and do not take a Starting slot', () => {
    const running: RunningCompressionJob[] = [{ jobId: 'r1', type: 'Starting', zoneId: 'z1', hostId: 'h1' }];
    const finalizing: WaitingCompressionJob[] = [
      { jobId: 'f1', type: 'Finalizing', zoneId: 'z1', preferredHostId: 'h1', scheduledAt: ago(500) },
      { jobId: 'f2', type: 'Finalizing', zoneId: 'z1', preferredHostId: 'h1', scheduledAt: ago(400) },
    ];
    const plan = planCompressionStarts([...finalizing, ...starting(2)], running, [hosts[0]], limits(1, 1), now);
    expect(plan).toEqual([
      { jobId: 'f1', hostId: 'h1' },
      { jobId: 'f2', hostId: 'h1' },
    ]);
    const runningFinalizing: RunningCompressionJob[] = [{ jobId: 'f0', type: 'Finalizing', zoneId: 'z1', hostId: 'h1' }];
    expect(planCompressionStarts(starting(2), runningFinalizing, [hosts[0]], limits(1, 1), now)).toEqual([{ jobId: 's00', hostId: 'h1' }]);
  });

  it('only due jobs, only Up hosts of the job zone, and each zone has its own limit', () => {
    const later = starting(1, { jobId: 'later', scheduledAt: new Date(now.getTime() + 1000) });
    expect(planCompressionStarts(later, [], hosts, limits(5, 5), now)).toEqual([]);
    const down = [{ hostId: 'h1', zoneId: 'z1', up: false }, hosts[3]];
    expect(planCompressionStarts(starting(2), [], down, limits(5, 5), now)).toEqual([]);
    const z2 = starting(3, { zoneId: 'z2', preferredHostId: null });
    const perZone = (z: string) => (z === 'z1' ? 1 : 2);
    const plan = planCompressionStarts([...starting(3), ...z2], [], hosts, { perHost: () => -1, perZone }, now);
    expect(count(plan)).toEqual({ h1: 1, h9: 2 });
  });

  it('a host with its own per-host limit is held to it, the others to theirs', () => {
    const perHost = (h: string) => (h === 'h1' ? 1 : h === 'h2' ? -1 : 2);
    const plan = planCompressionStarts(starting(10), [], hosts.slice(0, 3), { perHost, perZone: () => -1 }, now);
    expect(count(plan)).toEqual({ h1: 1, h2: 7, h3: 2 });
    expect(plan[0]).toEqual({ jobId: 's00', hostId: 'h1' }); // the preferred host, up to its own limit
    const running: RunningCompressionJob[] = [{ jobId: 'r1', type: 'Starting', zoneId: 'z1', hostId: 'h1' }];
    expect(count(planCompressionStarts(starting(3), running, [hosts[0]], { perHost, perZone: () => -1 }, now))).toEqual({});
  });

  it('a Finalizing job whose host is gone goes to another Up host of its zone', () => {
    const f: WaitingCompressionJob[] = [{ jobId: 'f1', type: 'Finalizing', zoneId: 'z1', preferredHostId: 'gone', scheduledAt: ago(1) }];
    expect(planCompressionStarts(f, [], hosts, limits(1, 1), now)).toEqual([{ jobId: 'f1', hostId: 'h1' }]);
  });
});
