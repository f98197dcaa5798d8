export { FerryError, isFerryError, ERROR_CODES } from './errors.js';
export type { FerryErrorCode, FerryErrorContext } from './errors.js';
