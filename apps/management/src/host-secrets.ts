import { SecretBox } from '@strata/application';
import { RepositoryAccess } from '@strata/jobs';

/**
 * What a host job carries encrypted, re-encrypted from the master key to the host key
 * (`SecretBox.hostKey`, which agents read from STRATA_AGENT_KEY_FILE): agents never hold the master key,
 * and the clear text is never in Redis.
 */
export class HostSecrets {
  private readonly hostBox: SecretBox;

  constructor(private readonly master: SecretBox) {
    this.hostBox = master.hostKey();
  }

  /** The job with its repository's credentials (if any) sealed for the host. */
  seal<T extends object>(data: T): T {
    const repository = (data as { repository?: RepositoryAccess }).repository;
    if (!repository?.encryptedCredentials) return data;
    return { ...data, repository: { ...repository, encryptedCredentials: this.hostBox.encrypt(this.master.decrypt(repository.encryptedCredentials)) } };
  }
}
