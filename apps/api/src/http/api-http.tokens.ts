/**
 * Injection tokens of the API protocol layer. Strings rather than symbols so that modules built
 * separately (the lead's app module, tests) can name them without importing this file.
 */

/** `CommandDefinition[]` (or an array of such arrays, one per source module) */
export const API_COMMANDS = 'API_COMMANDS';

/** an `ApiUserDirectory` */
export const API_USER_DIRECTORY = 'API_USER_DIRECTORY';
