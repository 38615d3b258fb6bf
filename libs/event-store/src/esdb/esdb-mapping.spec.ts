import { ANY, NO_STREAM, STREAM_EXISTS, type RecordedEvent as EsdbRecordedEvent } from '@eventstore/db-client';
import { fromEsdbCurrentRevision, fromEsdbEvent, isSystemEvent, toEsdbExpectedRevision, toEsdbPosition } from './esdb-mapping';

describe('EventStoreDB mapping', () => {
  it('maps expected revisions to the client constants and BigInt', () => {
    expect(toEsdbExpectedRevision('any')).toBe(ANY);
    expect(toEsdbExpectedRevision('no_stream')).toBe(NO_STREAM);
    expect(toEsdbExpectedRevision('stream_exists')).toBe(STREAM_EXISTS);
    expect(toEsdbExpectedRevision(41)).toBe(41n);
  });

  it('maps the actual revision of a conflict back', () => {
    expect(fromEsdbCurrentRevision(NO_STREAM)).toBe('no_stream');
    expect(fromEsdbCurrentRevision(7n)).toBe(7);
  });

  it('encodes positions as "<commit>:<prepare>"', () => {
    expect(toEsdbPosition('1234:1200')).toEqual({ commit: 1234n, prepare: 1200n });
  });

  it('recognises system streams and types', () => {
    expect(isSystemEvent({ streamId: '$stats-127.0.0.1:2113', type: '$statsCollected' })).toBe(true);
    expect(isSystemEvent({ streamId: 'vmBackups-1', type: '$>' })).toBe(true);
    expect(isSystemEvent({ streamId: 'vmBackups-1', type: 'BackupRequested' })).toBe(false);
  });

  const recorded = (overrides: Partial<EsdbRecordedEvent>): EsdbRecordedEvent =>
    ({
      streamId: 'vmBackups-1',
      id: 'a1b2c3d4-0000-4000-8000-000000000001',
      isJson: true,
      revision: 3n,
      type: 'BackupRequested',
      created: new Date(0),
      data: { backupId: 'b' },
      metadata: { correlationId: 'c' },
      position: { commit: 200n, prepare: 190n },
      ...overrides,
    }) as EsdbRecordedEvent;

  it('converts a recorded event', () => {
    expect(fromEsdbEvent(recorded({}))).toEqual({
      id: 'a1b2c3d4-0000-4000-8000-000000000001',
      type: 'BackupRequested',
      data: { backupId: 'b' },
      metadata: { correlationId: 'c' },
      streamId: 'vmBackups-1',
      streamRevision: 3,
      position: '200:190',
      createdAt: new Date(0),
    });
  });

  it('falls back on the commit position, and refuses an event without any position', () => {
    expect(fromEsdbEvent(recorded({ position: undefined }), 300n).position).toBe('300:300');
    expect(() => fromEsdbEvent(recorded({ position: undefined }))).toThrow(/without a position/);
  });

  it('turns missing or binary metadata into {}', () => {
    expect(fromEsdbEvent(recorded({ metadata: undefined })).metadata).toEqual({});
    expect(fromEsdbEvent(recorded({ metadata: new Uint8Array([1]) })).metadata).toEqual({});
  });
});
