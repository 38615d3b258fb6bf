import { CompressionSettings } from './compression-scheduler';

describe('CompressionSettings', () => {
  const rows = [
    { name: 'backup.compression.max.concurrent.operations', scope_key: 'global', value: '4' },
    { name: 'backup.compression.max.concurrent.operations', scope_key: 'zone-1', value: '2' },
    { name: 'backup.compression.minimum.free.storage', scope_key: 'zone-1', value: '2.5' },
    { name: 'backup.compression.task.enabled', scope_key: 'global', value: 'false' },
    { name: 'backup.compression.coroutines', scope_key: 'zone-1', value: '9' },
  ];
  const s = new CompressionSettings(rows);

  it('takes a zone value where the setting is zone-scoped, else the global one, else the default', () => {
    expect(s.number('backup.compression.max.concurrent.operations', 'zone-1')).toBe(2);
    expect(s.number('backup.compression.max.concurrent.operations', 'zone-2')).toBe(4);
    expect(s.number('backup.compression.max.concurrent.compressions.per.host')).toBe(5);
    expect(s.taskEnabled).toBe(false);
    // A global setting ignores a zone row.
    expect(s.attempt('zone-1')).toEqual({ coroutines: 1, rateLimitMBps: 0, minimumFreeStorage: 2.5, timeoutSeconds: 28800 });
    expect(s.attempt('zone-2').minimumFreeStorage).toBe(1);
    expect(new CompressionSettings([]).taskEnabled).toBe(true);
  });

  it("takes a host's own per-host limit over the global one, and host rows only for settings with a host override", () => {
    const perHost = 'backup.compression.max.concurrent.compressions.per.host';
    const withHosts = new CompressionSettings([
      { name: perHost, scope_key: 'global', value: '2' },
      { name: perHost, scope_key: 'host:h-1', value: '1' },
      { name: 'backup.compression.coroutines', scope_key: 'host:h-1', value: '7' },
    ]);
    expect(withHosts.perHost('h-1')).toBe(1);
    expect(withHosts.perHost('h-2')).toBe(2);
    expect(new CompressionSettings([{ name: perHost, scope_key: 'host:h-1', value: '-1' }]).perHost('h-2')).toBe(5);
    expect(withHosts.number('backup.compression.coroutines', null, 'h-1')).toBe(1);
  });
});
