import { apiUsersProjection, asyncJobsProjection } from './access.projection';
import { offeringsProjection } from './offerings.projection';
import { Projection } from './projection';
import { settingsProjection } from './settings.projection';
import { zonesProjection } from './zones.projection';
import { inventoryProjection } from './inventory.projection';
import { backupsProjection } from './backups.projection';
import { restoresProjection } from './restores.projection';
import { compressionProjection } from './compression.projection';
import { lifecycleProjection } from './lifecycle.projection';

export * from './projection';

export const READ_MODEL_PROJECTIONS: Projection[] = [zonesProjection, offeringsProjection, settingsProjection, apiUsersProjection, asyncJobsProjection, inventoryProjection, backupsProjection, restoresProjection, compressionProjection, lifecycleProjection];
