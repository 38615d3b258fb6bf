import { CommandDefinition } from '../http/command-definition';
import { ApiServices } from './api-services';
import { asyncJobCommands } from './async-jobs.commands';
import { configurationCommands } from './configurations.commands';
import { offeringCommands } from './offerings.commands';
import { repositoryCommands } from './repositories.commands';
import { zoneCommands } from './zones.commands';
import { inventoryCommands } from './inventory.commands';
import { backupCommands } from './backups.commands';
import { compressionCommands } from './compression.commands';
import { restoreCommands } from './restores.commands';
import { scheduleCommands } from './schedules.commands';

export * from './api-services';

/** Every command strata answers, except listApis which the protocol layer derives from this list. */
export function catalogCommands(services: ApiServices): CommandDefinition[] {
  return [...zoneCommands(services), ...offeringCommands(services), ...repositoryCommands(services), ...configurationCommands(services), ...asyncJobCommands(services), ...inventoryCommands(services), ...backupCommands(services), ...compressionCommands(services), ...restoreCommands(services), ...scheduleCommands(services)];
}
