import { randomUUID } from 'node:crypto';
import { normaliseReadStreamOptions, validateAppend } from './append-validation';
import { InvalidAppendError, InvalidStreamNameError } from './event-store.errors';

describe('validateAppend', () => {
  const event = (id: string = randomUUID(), type = 'BackupRequested') => ({ id, type, data: {} });

  it('lower-cases ids and keeps everything else', () => {
    const id = randomUUID().toUpperCase();
    const [valid] = validateAppend('vmBackups-1', [{ ...event(id), metadata: { a: 1 } }], 'any');
    expect(valid).toEqual({ id: id.toLowerCase(), type: 'BackupRequested', data: {}, metadata: { a: 1 } });
  });

  it.each(['vm', '-x', 'vm-', '1vm-x', 'vm_backups-x', '$all-x', 'vm backups-x'])('refuses stream name %j', (name) => {
    expect(() => validateAppend(name, [event()], 'any')).toThrow(InvalidStreamNameError);
  });

  it('accepts ids with dashes after the category', () => {
    expect(() => validateAppend(`vmBackups-${randomUUID()}`, [event()], 'any')).not.toThrow();
  });

  it.each([
    ['no events', []],
    ['a non-UUID id', [event('job-42')]],
    ['the same id twice, in any case', [event('0b5f1f4e-4e69-4b83-9d2b-3a0f7a4a1e11'), event('0B5F1F4E-4E69-4B83-9D2B-3A0F7A4A1E11')]],
    ['an empty type', [event(undefined, '')]],
    ['a system type', [event(undefined, '$metadata')]],
  ])('refuses %s', (_what, events) => {
    expect(() => validateAppend('vm-1', events, 'any')).toThrow(InvalidAppendError);
  });

  it.each([-1, 1.5, Number.NaN, 'latest'])('refuses expected revision %p', (expected) => {
    expect(() => validateAppend('vm-1', [event()], expected as never)).toThrow(InvalidAppendError);
  });
});

describe('normaliseReadStreamOptions', () => {
  it('defaults to the whole stream', () => {
    expect(normaliseReadStreamOptions()).toEqual({ fromRevision: 0, maxCount: null });
    expect(normaliseReadStreamOptions({ fromRevision: 3, maxCount: 2 })).toEqual({ fromRevision: 3, maxCount: 2 });
  });

  it('refuses negative or fractional values', () => {
    expect(() => normaliseReadStreamOptions({ fromRevision: -1 })).toThrow(RangeError);
    expect(() => normaliseReadStreamOptions({ maxCount: 0.5 })).toThrow(RangeError);
  });
});
