import { parseDateParam, parseZonedTimestamp } from './api-date';
import { ApiError, apiErrorFromDomain } from './api-error';
import { checkResponseFormat, formatApiDate, renderError, renderResult } from './api-response';
import { DomainError } from '@strata/domain';

describe('api-response', () => {
  it('formats dates as yyyy-MM-ddTHH:mm:ss+0000 in UTC', () => {
    expect(formatApiDate(new Date('2026-11-22T10:00:00.999+02:00'))).toBe('2026-11-22T08:00:00+0000');
    expect(formatApiDate(new Date('0999-01-02T03:04:05Z'))).toBe('0999-01-02T03:04:05+0000');
  });

  it('reads its own date format back', () => {
    const d = new Date('2026-11-22T08:00:00Z');
    expect(parseZonedTimestamp(formatApiDate(d))).toEqual(d);
    expect(parseDateParam(formatApiDate(d))).toEqual(d);
  });

  it('wraps one object, converting dates and leaving out null fields', () => {
    const created = new Date('2026-01-01T00:00:00Z');
    const answer = renderResult('createZone', {
      kind: 'object',
      name: 'zone',
      object: { id: 'z', name: 'Z', created, removed: null, nested: [{ at: created, gone: undefined }], size: 10n },
    });
    expect(answer).toEqual({
      status: 200,
      body: {
        createzoneresponse: {
          zone: { id: 'z', name: 'Z', created: '2026-01-01T00:00:00+0000', nested: [{ at: '2026-01-01T00:00:00+0000' }], size: 10 },
        },
      },
    });
  });

  it('wraps lists with the total count; an empty list is {}', () => {
    expect(renderResult('listZones', { kind: 'list', name: 'zone', items: [{ id: 'a' }], count: 7 }).body).toEqual({
      listzonesresponse: { count: 7, zone: [{ id: 'a' }] },
    });
    expect(renderResult('listZones', { kind: 'list', name: 'zone', items: [], count: 0 }).body).toEqual({ listzonesresponse: {} });
    // A page past the end: CloudStack keeps the count and leaves the array out.
    expect(renderResult('listZones', { kind: 'list', name: 'zone', items: [], count: 7 }).body).toEqual({
      listzonesresponse: { count: 7 },
    });
  });

  it('wraps success and async answers', () => {
    expect(renderResult('deleteZone', { kind: 'success' }).body).toEqual({ deletezoneresponse: { success: true } });
    expect(renderResult('deleteZone', { kind: 'success', displaytext: 'gone' }).body).toEqual({
      deletezoneresponse: { success: true, displaytext: 'gone' },
    });
    expect(renderResult('deleteBackup', { kind: 'async', jobid: 'j' }).body).toEqual({ deletebackupresponse: { jobid: 'j' } });
    expect(renderResult('createBackup', { kind: 'async', jobid: 'j', id: 'b' }).body).toEqual({
      createbackupresponse: { id: 'b', jobid: 'j' },
    });
    expect(renderResult('queryAsyncJobResult', { kind: 'raw', body: { jobid: 'j', jobstatus: 0 } }).body).toEqual({
      queryasyncjobresultresponse: { jobid: 'j', jobstatus: 0 },
    });
  });

  it('renders errors with the code as HTTP status, under errorresponse when no command is known', () => {
    expect(renderError(ApiError.paramError('bad'), 'createZone')).toEqual({
      status: 431,
      body: { createzoneresponse: { errorcode: 431, cserrorcode: 4350, errortext: 'bad' } },
    });
    expect(renderError(ApiError.unsupported('nope'))).toEqual({
      status: 432,
      body: { errorresponse: { errorcode: 432, cserrorcode: 9999, errortext: 'nope' } },
    });
  });

  it('maps domain refusals to CloudStack codes', () => {
    const code = (e: DomainError) => apiErrorFromDomain(e, 'deleteZone').errorcode;
    expect(code(new DomainError('invalid', 'x'))).toBe(431);
    expect(code(new DomainError('not_found', 'x'))).toBe(431);
    expect(code(new DomainError('in_use', 'x'))).toBe(536);
    expect(code(new DomainError('conflict', 'x'))).toBe(536);
    expect(code(new DomainError('unavailable', 'x'))).toBe(534);
    expect(code(new DomainError('unsupported', 'x'))).toBe(432);
    // A kind the API does not know yet is a server error, never a success.
    expect(code(new DomainError('some-new-kind' as DomainError['kind'], 'x'))).toBe(530);
    const named = apiErrorFromDomain(new DomainError('not_found', 'no zone with this id', 'id'), 'deleteZone');
    expect(named.errortext).toBe('Unable to execute API command deletezone due to invalid value. Invalid parameter id: no zone with this id');
    expect(named.cserrorcode).toBe(4350);
  });

  it('accepts json or nothing, and refuses xml with a clear 432', () => {
    expect(() => checkResponseFormat(undefined)).not.toThrow();
    expect(() => checkResponseFormat('JSON')).not.toThrow();
    expect(() => checkResponseFormat('xml')).toThrow(expect.objectContaining({ errorcode: 432, errortext: expect.stringContaining('JSON only') }));
  });
});
