import { randomBytes } from 'node:crypto';
import { apiUserDecider, API_ROLES, ApiRole, Streams } from '@strata/domain';
import { newId, SecretBox } from '@strata/application';
import { ProjectionWaiter } from '@strata/read-models';
import { Runtime } from './runtime';

export interface CreatedKeys {
  userid: string;
  name: string;
  role: ApiRole;
  apikey: string;
  secretkey: string;
}

/** CloudStack-style keys: 64 random bytes each, base64url like CloudStack's generated keys. */
export async function createApiKeys(rt: Runtime, secrets: SecretBox, role: string, name: string, now: Date): Promise<{ keys: CreatedKeys; usable: boolean }> {
  if (!API_ROLES.includes(role as ApiRole)) throw new Error(`--role must be Admin or User, got "${role}"`);
  const userId = newId();
  const apiKey = randomBytes(64).toString('base64url');
  const secretKey = randomBytes(64).toString('base64url');
  const result = await rt.handler.handle(Streams.apiUser(userId), apiUserDecider, {
    type: 'CreateApiUser',
    data: { userId, name, role: role as ApiRole, apiKey, encryptedSecretKey: secrets.encrypt(secretKey), at: now },
  });
  // The key works once the projector has applied the event; say so if no projector is running.
  const waiter = new ProjectionWaiter(rt.config.databaseUrl, rt.store);
  await waiter.start();
  const usable = await waiter.waitFor(result.append!.position, 5000);
  await waiter.stop();
  return { keys: { userid: userId, name, role: role as ApiRole, apikey: apiKey, secretkey: secretKey }, usable };
}
