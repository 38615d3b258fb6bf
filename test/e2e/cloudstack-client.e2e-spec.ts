import { existsSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cs, SYSTEM_PYTHON } from '../support/cs-client';
import { RunningPlane, startManagementPlane } from '../support/management-plane';
import { until } from '../support/strata-process';

/** Debian's CloudStack client (python3-cs) drives strata unchanged: signing, envelopes, async polling. */
describe('python3-cs against a running strata', () => {
  let plane: RunningPlane;
  const call = (command: string, params: Record<string, string> = {}, keys = plane.admin) => cs(plane.endpoint, keys.apikey, keys.secretkey, command, params);

  beforeAll(async () => {
    if (!existsSync(SYSTEM_PYTHON)) throw new Error(`${SYSTEM_PYTHON} is missing: install python3-cs (scripts/ensure-services.sh does)`);
    plane = await startManagementPlane();
  });

  afterAll(async () => {
    await plane?.stop();
  });

  it('creates, lists and deletes a native offering, imports it asynchronously, and is refused where it must be', async () => {
    const zone = await call('createZone', { name: 'cs-zone' });
    expect(zone.stderr).toBe('');
    const zoneId = (zone.json!.zone as { id: string }).id;

    const repo = await call('addBackupRepository', { name: 'local-repo', type: 'local', address: mkdtempSync(join(tmpdir(), 'strata-repo-')), zoneid: zoneId });
    expect((repo.json!.backuprepository as { type: string }).type).toBe('local');

    // Values with characters the Java and Python encoders treat differently (`~`, `*`, space, unicode).
    const created = await call('createNativeBackupOffering', { name: 'gold ~*é', compress: 'True', backupchainsize: '4' });
    const native = created.json!.nativebackupoffering as { id: string; name: string; compress: boolean; backupchainsize: number };
    expect(native).toMatchObject({ name: 'gold ~*é', compress: true, backupchainsize: 4 });

    const listed = await call('listNativeBackupOfferings', { id: native.id });
    expect(listed.json).toMatchObject({ count: 1, nativebackupoffering: [{ id: native.id, name: 'gold ~*é' }] });

    // cs polls queryAsyncJobResult until the job succeeds and prints the job's result.
    const imported = await call('importBackupOffering', { name: 'gold-imported', description: 'imported by cs', zoneid: zoneId, externalid: native.id, allowuserdrivenbackups: 'true' });
    expect(imported.json).toMatchObject({ backupoffering: { name: 'gold-imported', externalid: native.id, zoneid: zoneId, zonename: 'cs-zone', provider: 'strata' } });
    const offeringId = (imported.json!.backupoffering as { id: string }).id;
    expect((await call('listBackupOfferings', { zoneid: zoneId })).json).toMatchObject({ count: 1, backupoffering: [{ id: offeringId }] });

    // Refused: the native offering is imported (536), and a User may not create zones (432).
    const refused = await call('deleteNativeBackupOffering', { id: native.id });
    expect(refused.json).toMatchObject({ deletenativebackupofferingresponse: { errorcode: 536 } });
    const user = await plane.createKeys('User', 'alice');
    const denied = await call('createZone', { name: 'not-yours' }, user);
    expect(JSON.stringify(denied.json)).toContain('"errorcode": 432'.replace(': ', ':'));

    // Deleting the imported offering releases the native one (through the dispatcher), which can then go.
    expect((await call('deleteBackupOffering', { id: offeringId })).json).toMatchObject({ success: true });
    await until(async () => (await call('deleteNativeBackupOffering', { id: native.id })).json?.success === true, 15_000, 'the native offering to be released');
    // An empty list is `{"listnativebackupofferingsresponse":{}}`, which cs prints as nothing at all.
    const gone = await call('listNativeBackupOfferings', { id: native.id });
    expect({ code: gone.code, stdout: gone.stdout.trim(), stderr: gone.stderr }).toEqual({ code: 0, stdout: '', stderr: '' });
    expect((await call('listNativeBackupOfferings', { id: native.id, showremoved: 'true' })).json).toMatchObject({ count: 1 });
  });

  it('a wrong secret key is refused with 401', async () => {
    const bad = await cs(plane.endpoint, plane.admin.apikey, 'not-the-secret', 'listZones');
    expect(bad.json).toMatchObject({ listzonesresponse: { errorcode: 401 } });
  });
});
