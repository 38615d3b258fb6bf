import {
  asyncJobDecider,
  backupOfferingDecider,
  DomainError,
  nativeOfferingDecider,
  Streams,
  zoneDecider,
} from '@strata/domain';
import { CommandHandler } from '../command-handler';
import { errorCodeForDomainError } from '../error-codes';
import { deterministicId } from '../ids';
import { backupOfferingResponse } from './backup-offering-view';

/** Free space of the zone's repositories as the read models know it (used to pick the default one). */
export interface RepositorySpace {
  freeBytesByRepository(zoneId: string): Promise<Map<string, number | null>>;
}

export interface UseCaseLogger {
  log(message: string): void;
}

/**
 * Finishes an importBackupOffering request: links the native offering (so it cannot be deleted while
 * imported), picks the repository, completes the offering and its async job. Every event id derives
 * from the async job id, so running it again after a crash finishes the work without repeating any of it.
 */
export class ImportBackupOfferingUseCase {
  constructor(
    private readonly handler: CommandHandler,
    private readonly space: RepositorySpace,
    private readonly logger: UseCaseLogger = { log: () => undefined },
  ) {}

  async run(offeringId: string, jobId: string, now: Date): Promise<void> {
    const id = (step: string) => () => deterministicId(jobId, step);
    const { state: offering } = await this.handler.load(Streams.backupOffering(offeringId), backupOfferingDecider);
    if (offering.status === 'absent') throw new Error(`backup offering ${offeringId} has no import request`);
    const terms = offering.terms!;
    try {
      if (offering.status === 'importing') {
        const repositoryId = await this.chooseRepository(terms.zoneId, terms.repositoryId);
        await this.handler.handle(
          Streams.nativeOffering(terms.nativeOfferingId),
          nativeOfferingDecider,
          { type: 'LinkImportedOffering', data: { offeringId: terms.nativeOfferingId, backupOfferingId: offeringId } },
          { eventId: id('link') },
        );
        await this.handler.handle(Streams.backupOffering(offeringId), backupOfferingDecider, { type: 'CompleteImport', data: { offeringId, repositoryId, at: now } }, { eventId: id('complete') });
        this.logger.log(`backup offering ${terms.name} (${offeringId}) imported in zone ${terms.zoneId} on repository ${repositoryId}`);
      }
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      await this.fail(offeringId, jobId, error, now);
      return;
    }
    if (offering.status === 'failed') {
      // An earlier attempt failed the import but stopped before failing the job.
      await this.fail(offeringId, jobId, new DomainError('invalid', offering.failureReason ?? 'the import failed'), now);
      return;
    }
    await this.finishJob(offeringId, jobId, now);
  }

  private async chooseRepository(zoneId: string, pinned: string | null): Promise<string> {
    const { state: zone } = await this.handler.load(Streams.zone(zoneId), zoneDecider);
    if (zone.status !== 'active') throw new DomainError('not_found', `zone ${zoneId} does not exist`, 'zoneid');
    if (pinned) {
      if (!zone.repositories[pinned]) throw new DomainError('not_found', `backup repository ${pinned} is not in zone ${zone.name}`, 'repositoryid');
      return pinned;
    }
    const candidates = Object.keys(zone.repositories);
    if (candidates.length === 0) throw new DomainError('invalid', `zone ${zone.name} has no backup repository; add one with addBackupRepository`, 'zoneid');
    const free = await this.space.freeBytesByRepository(zoneId);
    // Unknown capacity sorts last among known ones; ties go to the oldest-known id for stability.
    return candidates.sort((a, b) => (free.get(b) ?? -1) - (free.get(a) ?? -1) || a.localeCompare(b))[0];
  }

  private async fail(offeringId: string, jobId: string, error: DomainError, now: Date): Promise<void> {
    await this.handler.handle(Streams.backupOffering(offeringId), backupOfferingDecider, { type: 'FailImport', data: { offeringId, reason: error.message, at: now } }, {
      eventId: () => deterministicId(jobId, 'fail'),
    });
    await this.handler.handle(
      Streams.asyncJob(jobId),
      asyncJobDecider,
      { type: 'FailAsyncJob', data: { jobId, errorCode: errorCodeForDomainError(error.kind), errorText: error.message, at: now } },
      { eventId: () => deterministicId(jobId, 'job-failed') },
    );
    this.logger.log(`backup offering ${offeringId}: import failed: ${error.message}`);
  }

  private async finishJob(offeringId: string, jobId: string, now: Date): Promise<void> {
    const { state: offering } = await this.handler.load(Streams.backupOffering(offeringId), backupOfferingDecider);
    const terms = offering.terms!;
    const { state: zone } = await this.handler.load(Streams.zone(terms.zoneId), zoneDecider);
    const result = {
      backupoffering: backupOfferingResponse({
        id: offeringId,
        name: terms.name,
        description: terms.description,
        externalId: terms.nativeOfferingId,
        allowUserDrivenBackups: terms.allowUserDrivenBackups,
        zoneId: terms.zoneId,
        zoneName: zone.name,
        repositoryId: offering.repositoryId,
        created: now,
      }),
    };
    await this.handler.handle(Streams.asyncJob(jobId), asyncJobDecider, { type: 'SucceedAsyncJob', data: { jobId, resultType: 'object', result, at: now } }, {
      eventId: () => deterministicId(jobId, 'job-succeeded'),
    });
  }
}

/** After an imported offering is deleted, the native offering no longer counts it (and may be deleted). */
export class ReleaseNativeOfferingUseCase {
  constructor(private readonly handler: CommandHandler) {}

  async run(offeringId: string, nativeOfferingId: string): Promise<void> {
    await this.handler.handle(
      Streams.nativeOffering(nativeOfferingId),
      nativeOfferingDecider,
      { type: 'ReleaseImportedOffering', data: { offeringId: nativeOfferingId, backupOfferingId: offeringId } },
      { eventId: () => deterministicId(offeringId, 'release') },
    );
  }
}
