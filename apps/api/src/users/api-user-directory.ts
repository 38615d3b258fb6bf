import { DataSource } from 'typeorm';
import { SecretBox } from '@strata/application';
import { ApiUserView } from '@strata/read-models';
import { ApiRole, ApiUser, ApiUserDirectory } from '../http/command-definition';

/** API users from the read model; the secret key is decrypted only to verify a signature. */
export class ReadModelApiUserDirectory implements ApiUserDirectory {
  constructor(
    private readonly db: DataSource,
    private readonly secrets: SecretBox,
  ) {}

  async findByApiKey(apiKey: string): Promise<ApiUser | null> {
    const user = await this.db.getRepository(ApiUserView).findOne({ where: { apiKey } });
    if (!user) return null;
    return { id: user.id, name: user.name, role: user.role as ApiRole, apiKey: user.apiKey, secretKey: this.secrets.decrypt(user.encryptedSecretKey) };
  }
}
