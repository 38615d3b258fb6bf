import { formatHostLastSeen, MISSED_HEARTBEATS_LIMIT, parseHostLastSeen } from './host-liveness';

describe('host last-seen values', () => {
  it('carry the beat time and a silence limit of MISSED_HEARTBEATS_LIMIT beats', () => {
    const value = formatHostLastSeen(1_764_000_000_123, 10);
    expect(value).toBe(`1764000000123:${10_000 * MISSED_HEARTBEATS_LIMIT}`);
    expect(parseHostLastSeen(value)).toEqual({ atMs: 1_764_000_000_123, silenceLimitMs: 30_000 });
  });

  it('are null when they are not "<ms>:<ms>", so the monitor forgets them instead of judging garbage', () => {
    for (const bad of ['', '123', '123:', ':30000', 'abc:30000', '1.5:30000', '123:30000:1']) expect(parseHostLastSeen(bad)).toBeNull();
  });
});
